"""Benchmarks for kita: ``python -m bench [names...]`` (or ``make bench``).

Each benchmark is a function registered with :func:`bench.registry.register`. It returns
:class:`bench.results.Figure` records; ``python -m bench`` prints every figure as one JSON line on
stdout and merges them into ``bench/results.json``. Progress and diagnostics go to stderr.

To add a benchmark: write a module in this package with a function decorated with
``@register("name")``, and add the module to ``BENCH_MODULES`` in ``bench/registry.py``.
"""
