"""What the eval journal and the completion cache cost and save, side by side in one run.

Endpoint backend (issue 12, deliverable 6): HumanEval's prompts through the real
`OpenAIBackend` (real `openai` SDK, real HTTP to the loopback server in its own process,
real SQLite cache): a cold run, then the same run again, which must send zero requests.
In-process backend: the tiny random model of the tests, the same tasks generated with and
without the journal (fsync per batch), then a resume from a complete journal. Prints wall
times, requests the server received and the ratios.

    python benchmarks/bench_eval_resume.py [--tasks 164] [--latency 0.05] [--hf-tasks 16] [--repeat 3]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fakeserver import remote_stats, subprocess_server  # noqa: E402

from evolcoder.config import GenerateConfig, LLMConfig, build  # noqa: E402
from evolcoder.eval.generate import HFBackend, generate_samples, make_backend  # noqa: E402
from evolcoder.eval.problems import load_benchmark  # noqa: E402


def _timed(*args, **kwargs) -> tuple[float, dict]:
    started = time.perf_counter()
    _, stats = generate_samples(*args, **kwargs)
    return time.perf_counter() - started, stats


def bench_endpoint(tasks: int, latency: float, tmp: Path) -> None:
    problems = load_benchmark("humaneval").problems[:tasks]
    with subprocess_server(latency=latency) as url:
        cfg = build(GenerateConfig, {"backend": "openai", "base_url": url, "api_model": "fake",
                                     "concurrency": 16, "mode": "completion"}, "generate")
        backend = make_backend(cfg, "fake", llm=LLMConfig(), cache_path=tmp / "cache.sqlite", stage="bench")
        cold, _ = _timed(problems, backend, cfg, "completion")
        sent = remote_stats(url)["paths"].get("/v1/completions", 0)
        warm, _ = _timed(problems, backend, cfg, "completion")
        again = remote_stats(url)["paths"].get("/v1/completions", 0) - sent
    click.echo(f"endpoint, {tasks} tasks, {latency * 1000:.0f} ms latency, concurrency 16: cold {cold:.2f} s "
               f"({sent} requests), cached re-run {warm:.2f} s ({again} requests): {warm / cold:.1%} of cold")


def bench_hf(tasks: int, repeat: int, tmp: Path) -> None:
    """Interleaved repeats, medians: on a shared machine one run's noise dwarfs a few fsyncs."""
    from tinymodel import build_tiny_model

    problems = load_benchmark("humaneval").problems[:tasks]
    backend = HFBackend(str(build_tiny_model(tmp / "tiny")), dtype="float32")
    cfg = build(GenerateConfig, {"max_new_tokens": 16, "batch_size": 4, "early_stop": False}, "generate")
    _timed(problems, backend, cfg, "completion")  # warm-up
    plain, journaled, resumed = [], [], []
    for r in range(repeat):
        plain.append(_timed(problems, backend, cfg, "completion")[0])
        journaled.append(_timed(problems, backend, cfg, "completion", journal_dir=tmp / f"journal{r}")[0])
        resumed.append(_timed(problems, backend, cfg, "completion", journal_dir=tmp / f"journal{r}")[0])
    a, b, c = (statistics.median(x) for x in (plain, journaled, resumed))
    click.echo(f"hf tiny model, {tasks} tasks, batch 4, median of {repeat}: no journal {a:.2f} s, journal "
               f"{b:.2f} s ({b / a:.2f}x), resume from a complete journal {c:.3f} s ({c / a:.1%} of a run)")


@click.command()
@click.option("--tasks", default=164, show_default=True, help="HumanEval tasks sent to the endpoint.")
@click.option("--latency", default=0.05, show_default=True, help="Loopback server latency per request (s).")
@click.option("--hf-tasks", default=16, show_default=True, help="HumanEval tasks for the in-process model.")
@click.option("--repeat", default=3, show_default=True, help="Interleaved repeats of the in-process runs.")
@click.option("--smoke", is_flag=True, help="Tiny sizes, seconds: CI checks the bench still runs.")
def main(tasks: int, latency: float, hf_tasks: int, repeat: int, smoke: bool) -> None:
    if smoke:
        tasks, latency, hf_tasks, repeat = 8, 0.01, 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        bench_endpoint(tasks, latency, Path(tmp))
        bench_hf(hf_tasks, repeat, Path(tmp))


if __name__ == "__main__":
    main()
