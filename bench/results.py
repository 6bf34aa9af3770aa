"""The result record: one figure per JSON object, with ratios to baselines of the same run."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Figure:
    """One measured number. ``vs`` maps a baseline's name to value / baseline value."""

    bench: str
    metric: str
    value: float
    unit: str
    vs: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "bench": self.bench,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
        }
        if self.vs:
            record["vs"] = dict(self.vs)
        return record

    def to_json_line(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def ratio(value: float, baseline: float) -> float:
    """``value / baseline`` rounded to three decimals; a zero or non-finite baseline is refused
    because the ratio would be meaningless (or not valid JSON)."""
    if not math.isfinite(value) or not math.isfinite(baseline) or baseline <= 0:
        raise ValueError(f"cannot compare {value!r} with baseline {baseline!r}")
    return round(value / baseline, 3)


def figure(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    *,
    baselines: Mapping[str, float] | None = None,
    digits: int = 2,
) -> Figure:
    """Build a figure; ``baselines`` maps each baseline's name to its value of the same metric."""
    if not math.isfinite(value):
        raise ValueError(f"{bench}.{metric}: value {value!r} is not a finite number")
    vs = {name: ratio(value, base) for name, base in (baselines or {}).items()}
    return Figure(bench=bench, metric=metric, value=round(value, digits), unit=unit, vs=vs)


def merge_results(
    path: Path, figures: Iterable[Figure], *, benches: Iterable[str]
) -> list[dict[str, Any]]:
    """Write ``path`` as a JSON list: earlier records of benchmarks not run now are kept, records
    of the benchmarks in ``benches`` are replaced by ``figures``. Returns what was written."""
    replaced = set(benches)
    kept: list[dict[str, Any]] = []
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        previous = []
    if isinstance(previous, list):
        kept = [r for r in previous if isinstance(r, dict) and r.get("bench") not in replaced]
    records = kept + [f.to_dict() for f in figures]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return records
