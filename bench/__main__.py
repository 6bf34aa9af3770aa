"""``python -m bench [names...]``: run all (or the named) benchmarks, print one JSON line per
figure on stdout and merge the figures into bench/results.json."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from bench.registry import BenchError, load_benchmarks, run_context
from bench.results import RESULTS_PATH, Figure, merge_results


def main(argv: list[str] | None = None) -> int:
    registry = load_benchmarks()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results file")
    args = parser.parse_args(argv)
    if args.list:
        for bench in registry.values():
            print(f"{bench.name:<20} {bench.description}")
        return 0
    unknown = [name for name in args.names if name not in registry]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; see --list")
    selected = [b for b in registry.values() if not args.names or b.name in args.names]

    started = time.monotonic()
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    busy = " (busy: figures will be noisy)" if load > cpus / 2 else ""
    print(f"[bench] load average {load:.2f} on {cpus} CPUs{busy}", file=sys.stderr, flush=True)
    figures: list[Figure] = []
    ran: list[str] = []
    failed: list[str] = []
    with run_context() as ctx:
        for bench in selected:
            ctx.log(f"{bench.name}: {bench.description}")
            bench_started = time.monotonic()
            try:
                produced = bench.run(ctx)
            except BenchError as exc:
                ctx.log(f"{bench.name} FAILED: {exc}")
                failed.append(bench.name)
                continue
            except Exception:
                ctx.log(f"{bench.name} FAILED:\n{traceback.format_exc()}")
                failed.append(bench.name)
                continue
            for result in produced:
                print(result.to_json_line(), flush=True)
            figures.extend(produced)
            ran.append(bench.name)
            ctx.log(f"{bench.name} done in {time.monotonic() - bench_started:.1f} s")
    merge_results(args.output, figures, benches=ran)
    ctx.log(
        f"{len(figures)} figures from {len(ran)} benchmark(s) written to {args.output} "
        f"in {time.monotonic() - started:.1f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
