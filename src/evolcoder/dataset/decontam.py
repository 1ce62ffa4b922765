"""Decontamination: drop training records that carry a benchmark item, in any field.

Two detectors, run on the instruction (+ input) and on the answer of every record:
word n-grams shared with a benchmark's prompt text (what leaks when a prompt or its
docstring is restated), and a renaming-invariant code fingerprint (fingerprint.py) that
catches a canonical solution reproduced under other names, re-indented, without its
docstring. Distinctive HumanEval-style entry-point names are a third, cheap signal.
Every hit names its detector, field, benchmark and task, so the merge metrics can count
each reason and `dropped.jsonl` shows exactly what matched.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from evolcoder.dataset.fingerprint import fingerprint

_TOKEN = re.compile(r"[a-z0-9_]+")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _informative(token: str, common: set[str]) -> bool:
    return len(token) > 1 and not token.isdigit() and token not in common


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True)
class ContaminationIndex:
    """Word n-grams and distinctive entry-point names of the benchmarks to protect (text only)."""

    n: int
    grams: dict[tuple[str, ...], str]  # n-gram -> benchmark name
    entry_points: dict[str, str]  # identifier -> benchmark name

    @classmethod
    def build(cls, texts: Iterable[tuple[str, str]], entry_points: Iterable[tuple[str, str]], n: int,
              min_entry_point_len: int = 10, min_rare: int = 0, common_share: float = 0.01,
              min_name_parts: int = 2) -> "ContaminationIndex":
        """Index every n-gram with at least `min_rare` informative tokens.

        A token is uninformative when it is a number, a single character, or occurs in at
        least `common_share` of the benchmark texts ("write a function that takes a string
        as input and" is in no sense a leak); an entry-point name counts only when it has
        at least `min_name_parts` underscore-separated parts (with 3: `has_close_elements`,
        not `is_palindrome`). The defaults index every n-gram (the plain check).
        """
        texts = list(texts)
        tokenised = [(bench, words(text)) for bench, text in texts]
        df = Counter(t for _, tokens in tokenised for t in set(tokens))
        common = {t for t, c in df.items() if c >= common_share * max(1, len(tokenised))}
        grams: dict[tuple[str, ...], str] = {}
        for bench, tokens in tokenised:
            for gram in ngrams(tokens, n):
                if sum(_informative(t, common) for t in gram) >= min_rare:
                    grams.setdefault(gram, bench)
        names: dict[str, str] = {}
        for bench, name in entry_points:
            if name.count("_") + 1 >= min_name_parts and len(name) >= min_entry_point_len:
                names.setdefault(name, bench)
        return cls(n=n, grams=grams, entry_points=names)

    def hits(self, text: str) -> list[tuple[str, str]]:
        """(detector, benchmark) for the first n-gram and the first entry-point name in `text`."""
        tokens = words(text)
        found: list[tuple[str, str]] = []
        gram = next((g for g in ngrams(tokens, self.n) if g in self.grams), None)
        if gram is not None:
            found.append(("ngram", self.grams[gram]))
        name = min((t for t in set(tokens) if t in self.entry_points), default=None)
        if name is not None:
            found.append(("entry_point", self.entry_points[name]))
        return found

    def check(self, text: str) -> str | None:
        """The reason `text` is contaminated, or None."""
        for detector, bench in self.hits(text):
            return f"{self.n}-gram overlap with {bench}" if detector == "ngram" else f"{bench} entry point name"
        return None


@dataclass
class CodeIndex:
    """Renaming-invariant k-gram fingerprints of benchmark programs, as an inverted index.

    A candidate matches an item when it contains at least `containment` of the item's
    k-grams. k-grams shared by more than `max_df` items are boilerplate (`for i in
    range(len(x))`) and are not indexed, so they neither match nor count.
    """

    k: int
    containment: float
    min_kgrams: int = 8
    max_df: int = 3
    postings: dict[int, list[int]] = field(default_factory=dict)
    items: list[tuple[str, str, int]] = field(default_factory=list)  # (benchmark, task_id, n indexed)
    unindexed: list[str] = field(default_factory=list)  # programs too short to fingerprint safely

    @classmethod
    def build(cls, programs: Iterable[tuple[str, str, str]], k: int, containment: float,
              min_kgrams: int = 8, max_df: int = 3) -> "CodeIndex":
        """`programs` is (benchmark, task_id, code); one task id is indexed once (HumanEval and
        HumanEval+ share their canonical programs)."""
        prints: dict[str, tuple[str, set[int]]] = {}
        for bench, task_id, code in programs:
            prints.setdefault(task_id, (bench, fingerprint(code, k)))
        df = Counter(h for _, fp in prints.values() for h in fp)
        index = cls(k=k, containment=containment, min_kgrams=min_kgrams, max_df=max_df)
        postings: dict[int, list[int]] = defaultdict(list)
        for task_id, (bench, fp) in prints.items():
            kept = sorted(h for h in fp if df[h] <= max_df)
            if len(kept) < min_kgrams:
                index.unindexed.append(task_id)
                continue
            for h in kept:
                postings[h].append(len(index.items))
            index.items.append((bench, task_id, len(kept)))
        index.postings = dict(postings)
        return index

    def match(self, text: str) -> tuple[str, str, float] | None:
        """(benchmark, task_id, containment) of the best-covered item at or above the threshold."""
        counts: Counter[int] = Counter()
        for h in fingerprint(text, self.k) & self.postings.keys():
            counts.update(self.postings[h])
        best: tuple[str, str, float] | None = None
        for item, hits in sorted(counts.items()):
            bench, task_id, size = self.items[item]
            share = hits / size
            if share >= self.containment and (best is None or share > best[2]):
                best = (bench, task_id, share)
        return best


_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
_ARROW = re.compile(r"\s*(?:==>|==|=>|->|\u279e|should return|returns|gives)\s*(.*)")


def calls(text: str, max_len: int = 400) -> list[tuple[str, int]]:
    """(arguments with whitespace removed, end offset) of every `name(...)` call in `text`.

    Brackets are balanced by counting; quotes are not parsed, which only matters for
    arguments holding unbalanced brackets inside strings (those keys simply never match).
    """
    found: list[tuple[str, int]] = []
    for m in _CALL.finditer(text):
        depth, start = 1, m.end()
        for i in range(start, min(len(text), start + max_len)):
            depth += text[i] in "([{"
            depth -= text[i] in ")]}"
            if depth == 0:
                found.append(("".join(text[start:i].split()), i + 1))
                break
    return found


def _expected(text: str, end: int) -> str:
    """The value a test case expects from the call ending at `end`: `== x` on its line, or
    the next line after a `>>>` prompt, whitespace removed."""
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    arrow = _ARROW.match(text[end:line_end])
    if arrow and arrow.group(1).strip():
        return "".join(arrow.group(1).split())
    line_start = text.rfind("\n", 0, end) + 1
    if text[line_start:end].lstrip().startswith(">>>"):
        nxt = text[line_end + 1:].split("\n", 1)[0].strip()
        if nxt and not nxt.startswith(">>>"):
            return "".join(nxt.split())
    return ""


@dataclass
class ExampleIndex:
    """The benchmark's own test cases and docstring examples: call arguments and expected value.

    A reworded docstring or a restated task usually keeps its examples, and a case like
    `f([5, 3, 5, 2, 3, 3, 9, 0, 123])` is as distinctive as a sentence, whatever the function
    is called. Arguments of at least `min_chars` characters match alone; any arguments match
    with their expected value written within the next `window` characters, when the two
    together have at least `confirmed_chars` characters. Cases shared by
    more than `max_tasks` tasks are boilerplate and are not indexed.
    """

    min_chars: int
    window: int = 80
    cases: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # args -> [(expected, bench, id)]

    @classmethod
    def build(cls, sources: Iterable[tuple[str, str, str, str]], min_chars: int = 10,
              confirmed_chars: int = 6, max_tasks: int = 3) -> "ExampleIndex":
        """`sources` is (benchmark, task_id, entry_point, text holding calls of entry_point)."""
        owners: dict[tuple[str, str], set[str]] = defaultdict(set)
        first: dict[tuple[str, str], tuple[str, str]] = {}
        for bench, task_id, entry_point, text in sources:
            for m in re.finditer(rf"(?<![\w.]){re.escape(entry_point)}\s*\(", text):
                got = calls(text[m.start():])[:1]
                for args, end in got:
                    expected = _expected(text, m.start() + end)
                    keys = {(args, "")} if len(args) >= min_chars else set()
                    if expected and len(args) + len(expected) >= confirmed_chars:
                        keys.add((args, expected))
                    for key in keys:
                        owners[key].add(task_id)
                        first.setdefault(key, (bench, task_id))
        cases: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for (args, expected), ids in sorted(owners.items()):
            if len(ids) <= max_tasks:
                cases[args].append((expected, *first[(args, expected)]))
        return cls(min_chars, cases=dict(cases))

    def match(self, text: str) -> tuple[str, str] | None:
        """(benchmark, task_id) of the first benchmark case `text` quotes."""
        for args, end in calls(text):
            for expected, bench, task_id in self.cases.get(args, ()):
                if not expected or expected in "".join(text[end:end + self.window].split()):
                    return bench, task_id
        return None


@dataclass(frozen=True)
class Hit:
    detector: str  # ngram | entry_point | code
    field: str  # instruction | output
    benchmark: str
    detail: str = ""

    @property
    def reason(self) -> str:
        return f"{self.field}_{self.detector}"


@dataclass
class Decontaminator:
    """Text and code detectors over both fields of a record."""

    text: ContaminationIndex
    code: CodeIndex
    examples: ExampleIndex
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> provenance

    def check(self, record: dict[str, Any]) -> list[Hit]:
        """Every detector that fires on `record`, instruction side first."""
        found: list[Hit] = []
        fields = (("instruction", f"{record.get('instruction', '')}\n{record.get('input', '')}"),
                  ("output", record.get("output", "") or ""))
        for name, text in fields:
            found += [Hit(detector, name, bench) for detector, bench in self.text.hits(text)]
            example = self.examples.match(text)
            if example is not None:
                found.append(Hit("example", name, example[0], example[1]))
            match = self.code.match(text)
            if match is not None:
                found.append(Hit("code", name, match[0], f"{match[1]} containment {match[2]:.2f}"))
        return found


def build_decontaminator(benchmarks: Iterable[Any], ngram: int, code_kgram: int,
                         code_containment: float, code_min_kgrams: int = 8,
                         example_min_chars: int = 10) -> Decontaminator:
    """Index `benchmarks` (evolcoder.eval.problems.Benchmark objects) for both detectors."""
    texts: list[tuple[str, str]] = []
    names: list[tuple[str, str]] = []
    programs: list[tuple[str, str, str]] = []
    cases: list[tuple[str, str, str, str]] = []
    sources: dict[str, dict[str, Any]] = {}
    for bench in benchmarks:
        sources[bench.name] = bench.provenance()
        for problem in bench.problems:
            texts.append((bench.name, problem.prompt))
            if bench.name.startswith(("humaneval", "multipl-e", "dev")):
                names.append((bench.name, problem.entry_point))
            if problem.language == "python" and problem.reference is not None:
                programs.append((bench.name, problem.task_id, problem.reference))
            if problem.language == "python" and problem.entry_point:
                cases.append((bench.name, problem.task_id, problem.entry_point, f"{problem.prompt}\n{problem.test}"))
    text = ContaminationIndex.build(texts, names, ngram, min_rare=2, min_name_parts=3)
    code = CodeIndex.build(programs, code_kgram, code_containment, min_kgrams=code_min_kgrams)
    examples = ExampleIndex.build(cases, example_min_chars)
    return Decontaminator(text=text, code=code, examples=examples, sources=sources)
