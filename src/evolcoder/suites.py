"""Names of the benchmarks the project can score: a leaf module, so params validation
can check a benchmark name without importing the loaders."""

from __future__ import annotations

MULTIPL_E_LANGUAGES = ("cpp", "java", "js", "rs", "go", "sh")

# MBPP task-id ranges of the splits of the full 974-task release.
MBPP_SPLITS = {"mbpp": (11, 510), "mbpp-validation": (511, 600), "mbpp-train": (601, 974),
               "mbpp-prompt": (1, 10), "mbpp-full": (1, 974)}

BENCHMARK_NAMES: tuple[str, ...] = (
    "humaneval", "humaneval+", *MBPP_SPLITS, "mbpp-sanitized", "mbpp+",
    *(f"multipl-e-{lang}" for lang in MULTIPL_E_LANGUAGES), "dev")
