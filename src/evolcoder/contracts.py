"""Stage contracts: where each stage's artifacts live and what its metrics files hold.

A stage's outputs are read by later stages, by `evolcoder report`, by `evolcoder evol-stop`
and by people; before this module each of them spelled the paths and the keys itself.
Writers and readers now go through the names and the typed models here, so a renamed file
or key is one edit and a malformed metrics file fails where it is read, naming the file.

The models describe the keys readers rely on and allow every other key (`extra="allow"`),
so a file round-trips byte for byte: `write_json` sorts keys, `exclude_unset` writes only
what was given, and numbers are typed `int | float` so an int is never rewritten as 1.0.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evolcoder.errors import DataError
from evolcoder.jsonio import write_json

Num = int | float

# --- artifact paths (as dvc.yaml writes them; the stages take them as options) ---
METRICS_DIR = "metrics"
SEED_METRICS = f"{METRICS_DIR}/seed.json"
MERGE_METRICS = f"{METRICS_DIR}/merge.json"
EVOL_METRICS = f"{METRICS_DIR}/evol.json"
EVOL_PLOT = f"{METRICS_DIR}/evol_rounds.json"
TRAIN_METRICS = f"{METRICS_DIR}/train.json"
EVAL_METRICS = {"eval_base": f"{METRICS_DIR}/eval_base.json", "eval": f"{METRICS_DIR}/eval.json",
                "dev": f"{METRICS_DIR}/dev.json"}
EVOL_STOP = f"{METRICS_DIR}/evol_stop.json"
REPORT = f"{METRICS_DIR}/report.md"
TRAIN_CONFIG = "evolcoder_config.json"  # written by finetune into the model directory, read by eval
PLAN_MANIFEST = "manifest.json"
ROUND_FILES = ("pool.jsonl", "kept.jsonl", "outcomes.jsonl")
ROUND_STATS = "stats.json"


def round_key(round_no: int) -> str:
    """`r<N>`: the round's folder under data/rounds, and its key in evol.per_round and metrics."""
    return f"r{round_no}"


def round_number(key: str) -> int:
    return int(key[1:])


def round_dir(rounds_dir: str | Path, round_no: int) -> Path:
    return Path(rounds_dir) / round_key(round_no)


def plan_file(plan_dir: str | Path, round_no: int) -> Path:
    return Path(plan_dir) / f"round_{round_no}.json"


class Metrics(BaseModel):
    """A metrics file: typed where read, every other key kept as written."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_unset=True)

    def write(self, path: str | Path) -> None:
        write_json(path, self.dump())

    @classmethod
    def parse(cls, data: Any, where: str | Path) -> Self:
        """Validate `data` (read from `where`), naming the file and the key on a contract break."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            key = ".".join(map(str, err["loc"])) or "(root)"
            raise DataError(f"{where}:1: {key}: {err['msg']} (not a {cls.__name__} file)") from None

    @classmethod
    def read(cls, path: str | Path) -> Self:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        return cls.parse(data, path)

    @classmethod
    def read_optional(cls, path: str | Path) -> Self | None:
        """None when the stage has not run (the report skips it); a broken file still fails."""
        return cls.read(path) if Path(path).is_file() else None


class SeedMetrics(Metrics):
    written: int = 0
    skipped: int = 0
    duplicates: int = 0


class RoundStats(Metrics):
    """`data/rounds/r<N>/stats.json`, and one entry of metrics/evol.json's `per_round`."""

    round: int
    active: bool
    items_in: int = 0
    kept: int = 0
    eliminated: int = 0
    failed: int = 0
    eliminated_by_reason: dict[str, int] = {}
    mean_instruction_words: Num | None = None
    llm_requests: int = 0
    llm_cache_hits: int = 0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    llm_est_cost: Num | None = None
    verified_fraction: Num | None = None
    mutant_kill_rate: Num | None = None
    verify_by_status: dict[str, int] = {}
    verify_reanswers: int = 0


class EvolMetrics(Metrics):
    """metrics/evol.json: the active rounds' stats keyed `r<N>`."""

    rounds: int
    per_round: dict[str, RoundStats]
    test_similarity: dict[str, Any] | None = None

    @classmethod
    def of(cls, stats: list[RoundStats], similarity: dict[str, Any] | None = None) -> "EvolMetrics":
        extra = {"test_similarity": similarity} if similarity is not None else {}
        return cls(rounds=len(stats), per_round={round_key(s.round): s for s in stats}, **extra)

    def ordered(self) -> list[tuple[str, RoundStats]]:
        return sorted(self.per_round.items(), key=lambda kv: round_number(kv[0]))


def evol_plot_rows(seed: Iterable[dict[str, Any]], stats: list[RoundStats],
                   similarity: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """metrics/evol_rounds.json: mean instruction length by round (0 = the seed), plus
    evol.verify's figures in every row once any round has them (`dvc plots` fails on a missing
    key), and each round's mean nearest-record similarity to the benchmarks when measured."""
    n_seed = seed_words = 0
    for record in seed:  # one pass: the seed may be streamed from disk
        n_seed += 1
        seed_words += len(record["instruction"].split())
    verify = [k for k in ("verified_fraction", "mutant_kill_rate") if any(k in s.model_fields_set for s in stats)]
    rows = [{"round": 0, "mean_instruction_words": round(seed_words / max(1, n_seed), 2), "kept": n_seed,
             **dict.fromkeys(verify)}]
    rows += [{"round": s.round, "mean_instruction_words": s.mean_instruction_words, "kept": s.kept,
              **{k: getattr(s, k) for k in verify}} for s in stats]
    for row in rows if similarity is not None else []:
        row["test_similarity"] = similarity["rounds"][round_key(row["round"])]["mean"]
    return rows


class MergeMetrics(Metrics):
    records_in: int = 0
    records_out: int = 0
    dropped: dict[str, int] = {}
    train_sha256: str | None = None


class FinetuneRecord(Metrics):
    """metrics/train.json (and the `metrics` block of the model's evolcoder_config.json)."""

    examples: int = 0
    global_step: int = 0
    train_loss: Num | None = None


class EvalEntry(Metrics):
    """One benchmark's scores in an eval metrics file; pass@k values are the `pass@<k>` keys."""

    n_tasks: int | None = None
    n_per_task: int | None = None
    ci95: dict[str, list[Num]] = {}
    errata: list[dict[str, Any]] = []
    task_ids: list[str] | None = None
    per_task_pass1: list[Num] | None = Field(None, alias="per_task_pass@1")

    def pass_at_k(self) -> dict[str, Num]:
        return {k: v for k, v in (self.model_extra or {}).items() if k.startswith("pass@")}


class EvalMetrics(BaseModel):
    """metrics/eval_base.json, eval.json, dev.json: `{<benchmark>: EvalEntry, ..., "provenance": {...}}`."""

    model_config = ConfigDict(frozen=True)

    benchmarks: dict[str, EvalEntry]
    provenance: dict[str, Any] = {}

    @classmethod
    def parse(cls, data: Any, where: str | Path) -> "EvalMetrics":
        if not isinstance(data, dict):
            raise DataError(f"{where}:1: expected a mapping of benchmarks")
        return cls(benchmarks={name: EvalEntry.parse(entry, f"{where}: {name}") for name, entry in data.items()
                               if name != "provenance"}, provenance=data.get("provenance") or {})

    @classmethod
    def read_optional(cls, path: str | Path) -> "EvalMetrics | None":
        if not Path(path).is_file():
            return None
        try:
            return cls.parse(json.loads(Path(path).read_text(encoding="utf-8")), path)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None

    def dump(self) -> dict[str, Any]:
        return {**{name: entry.dump() for name, entry in self.benchmarks.items()}, "provenance": self.provenance}

    def pass_at_k(self) -> dict[str, dict[str, Num]]:
        return {name: scores for name, entry in self.benchmarks.items() if (scores := entry.pass_at_k())}

    def intervals(self) -> dict[str, dict[str, list[Num]]]:
        return {name: entry.ci95 for name, entry in self.benchmarks.items() if entry.ci95}
