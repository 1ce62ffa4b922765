"""One entry per language the eval wing can prompt for, cut and run.

Why one table: a language's settings used to be spread over seven tables (the benchmark
names, the stop strings, the fence tags, the display names, the build steps, the compile
allowances and the toolchains), so adding or fixing a language meant finding all seven.
Prompts read `display`, post-processing `fences` and `stops`, execution `files`, `steps`,
`env`, `allowance_s`, `tools` and `needs_files`. The benchmark names stay in
`evolcoder.suites` (params validation must not import this wing); the registry is checked
against them when it loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from evolcoder.suites import MULTIPL_E_LANGUAGES

JAVA_CP = "/usr/share/java/javatuples.jar"


@dataclass(frozen=True)
class Language:
    """How a language's problems are prompted, post-processed and judged.

    `stops`: the completion-mode stop strings (Codex's for Python, MultiPL-E's own prompt
    files' for the others). `files`/`steps`: the MultiPL-E program is written to `source`
    (beside `files`) and `steps` run in order (compile..., run); pass = every step exits 0.
    `allowance_s`: added to the task's time floor for compiling. `tools`: programs that must
    be in a system directory (the sandbox cannot see a private home such as /root/.cargo);
    `needs_files`: other files the programs need, with how to get them.
    """

    name: str
    display: str
    fences: tuple[str, ...]
    stops: tuple[str, ...] = ()
    source: str = ""
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    steps: tuple[tuple[str, ...], ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    allowance_s: float = 0.0
    tools: tuple[str, ...] = ()
    needs_files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


_GO_ENV = {"GOCACHE": "$HOME/.gocache", "GOPATH": "$HOME/.gopath", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
           "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}

LANGUAGES: Mapping[str, Language] = MappingProxyType({lang.name: lang for lang in (
    Language("python", "Python", ("python", "py", "Python", "python3"),
             stops=("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")),
    Language("cpp", "C++", ("cpp", "c++", "C++"), stops=("\n}",), source="main.cpp",
             steps=(("g++", "-std=c++17", "-o", "main", "main.cpp"), ("./main",)), allowance_s=30.0,
             tools=("g++",)),
    Language("java", "Java", ("java",), stops=("\n    }\n",), source="Problem.java",
             steps=(("javac", "-nowarn", "-cp", f"{JAVA_CP}:.", "Problem.java"),
                    ("java", "-ea", "-Xss16m", "-Xmx512m", "-XX:+UseSerialGC", "-cp", f"{JAVA_CP}:.", "Problem")),
             allowance_s=30.0, tools=("javac", "java"),
             needs_files={JAVA_CP: "Debian package libjavatuples-java; every MultiPL-E Java prompt imports it"}),
    Language("js", "JavaScript", ("javascript", "js"), stops=("\nfunction ", "\n/*", "\n//", "\nconsole.log"),
             source="main.js", steps=(("node", "main.js"),), allowance_s=5.0, tools=("node",)),
    Language("rs", "Rust", ("rust", "rs"), stops=("\n}",), source="main.rs",
             steps=(("rustc", "-A", "warnings", "-o", "main", "main.rs"), ("./main",)), allowance_s=30.0,
             tools=("rustc",)),
    Language("go", "Go", ("go",), stops=("\nfunc", "struct", "\n// "), source="main_test.go",
             files={"go.mod": "module evol\n\ngo 1.18\n"}, steps=(("go", "test", "-count=1", "./"),),
             env=_GO_ENV, allowance_s=60.0, tools=("go",)),
    Language("sh", "Bash", ("bash", "sh", "shell"), stops=("\n}",), source="main.sh",
             steps=(("bash", "main.sh"),), allowance_s=5.0, tools=("bash",)),
)})

if set(LANGUAGES) != {"python", *MULTIPL_E_LANGUAGES}:  # a new MultiPL-E benchmark needs its entry here
    raise ImportError(f"evolcoder.eval.languages: registry {sorted(LANGUAGES)} does not match "
                      f"suites.MULTIPL_E_LANGUAGES {sorted(MULTIPL_E_LANGUAGES)} + python")


def language(name: str) -> Language:
    """The entry for `name`; an unknown language is a programming error, named."""
    try:
        return LANGUAGES[name]
    except KeyError:
        raise ValueError(f"no language {name!r} in evolcoder.eval.languages ({', '.join(LANGUAGES)})") from None
