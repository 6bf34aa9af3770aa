"""The registry of benchmarks and the context one run of ``python -m bench`` shares."""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from bench.results import Figure

#: Modules whose import registers benchmarks, in the order they run.
BENCH_MODULES: tuple[str, ...] = (
    "bench.http_home",
    "bench.pdf_portfolio",
    "bench.pwa_weight",
    "bench.push_fanout",
    "bench.crypto_timeline",
)

T = TypeVar("T")


class BenchError(Exception):
    """A benchmark could not measure what it claims to (wrong page, failed start, errors)."""


class RunContext:
    """What benchmarks of one run share: a temp folder, cleanups, and memoised expensive steps
    (a built database, a baseline measured once and used by several benchmarks)."""

    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.workdir = workdir
        self.stack = stack
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, build: Callable[[], T]) -> T:
        if key not in self._memo:
            self._memo[key] = build()
        return cast(T, self._memo[key])

    def log(self, message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextmanager
def run_context() -> Iterator[RunContext]:
    """A context whose temp folder and registered cleanups are removed at the end, always."""
    workdir = Path(tempfile.mkdtemp(prefix="kita-bench-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        yield RunContext(workdir, stack)


BenchFunction = Callable[[RunContext], list[Figure]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: BenchFunction
    description: str


REGISTRY: dict[str, Benchmark] = {}


def register(name: str) -> Callable[[BenchFunction], BenchFunction]:
    """Register a benchmark under ``name``; its docstring's first line describes it."""

    def decorator(function: BenchFunction) -> BenchFunction:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        REGISTRY[name] = Benchmark(name, function, doc[0] if doc else "")
        return function

    return decorator


def load_benchmarks() -> dict[str, Benchmark]:
    for module in BENCH_MODULES:
        importlib.import_module(module)
    return REGISTRY
