"""The benchmark result record: ratios to baselines, the JSON shape, and merging into
results.json. No benchmark runs here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.load import percentile
from bench.registry import REGISTRY, load_benchmarks, register
from bench.results import Figure, figure, merge_results, ratio


def test_figure_computes_each_baseline_ratio() -> None:
    result = figure(
        "http_parent_home",
        "requests_per_s",
        600.0,
        "req/s",
        baselines={"bare_endpoint": 2400.0, "other": 300.0},
        digits=1,
    )

    assert result.vs == {"bare_endpoint": 0.25, "other": 2.0}
    assert result.value == 600.0


def test_figure_json_line_has_exactly_the_documented_keys() -> None:
    line = figure("http_scale", "p95_ms", 12.3456, "ms", baselines={"data_1x": 10.0}).to_json_line()

    record = json.loads(line)
    assert "\n" not in line
    assert record == {
        "bench": "http_scale",
        "metric": "p95_ms",
        "value": 12.35,
        "unit": "ms",
        "vs": {"data_1x": 1.235},
    }


def test_figure_without_baseline_has_no_vs_key() -> None:
    record = figure("crypto", "ops_per_s", 1000, "ops/s").to_dict()

    assert record == {"bench": "crypto", "metric": "ops_per_s", "value": 1000, "unit": "ops/s"}


@pytest.mark.parametrize("baseline", [0.0, -1.0, math.inf, math.nan])
def test_ratio_refuses_meaningless_baselines(baseline: float) -> None:
    with pytest.raises(ValueError, match="baseline"):
        ratio(1.0, baseline)


def test_figure_refuses_a_non_finite_value() -> None:
    with pytest.raises(ValueError, match="finite"):
        figure("b", "m", math.nan, "ms")


def test_merge_replaces_records_of_benches_run_now_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps(
            [
                {"bench": "pdf", "metric": "pages_per_s", "value": 5, "unit": "pages/s"},
                {"bench": "http_scale", "metric": "requests_per_s", "value": 1, "unit": "req/s"},
                {"bench": "http_scale", "metric": "stale_metric", "value": 2, "unit": "ms"},
            ]
        ),
        encoding="utf-8",
    )
    new = [Figure("http_scale", "requests_per_s", 400.0, "req/s", {"data_1x": 0.9})]

    written = merge_results(path, new, benches=["http_scale"])

    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk == written
    assert on_disk == [
        {"bench": "pdf", "metric": "pages_per_s", "value": 5, "unit": "pages/s"},
        {
            "bench": "http_scale",
            "metric": "requests_per_s",
            "value": 400.0,
            "unit": "req/s",
            "vs": {"data_1x": 0.9},
        },
    ]


def test_merge_starts_afresh_from_a_missing_or_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("{not json", encoding="utf-8")

    merge_results(path, [Figure("a", "m", 1.0, "ms")], benches=["a"])

    assert json.loads(path.read_text(encoding="utf-8")) == [
        {"bench": "a", "metric": "m", "value": 1.0, "unit": "ms"}
    ]


def test_registry_holds_the_http_benchmarks_and_refuses_duplicates() -> None:
    load_benchmarks()

    assert {"http_parent_home", "http_scale"} <= set(REGISTRY)
    assert REGISTRY["http_scale"].description
    with pytest.raises(ValueError, match="twice"):
        register("http_scale")(REGISTRY["http_scale"].run)


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]

    assert percentile(ordered, 95) == 95.0
    assert percentile(ordered, 50) == 50.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) == 0.0
