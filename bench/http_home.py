"""HTTP benchmarks of the logged-in parent's home page (GET /home) under gunicorn.

- ``http_parent_home``: 10,000 families; requests/s and p95 latency with 16 concurrent
  connections, compared with the bare endpoint GET /ping of the same app in the same run.
  Targets: requests/s ratio ≥ 0.5, p95 ≤ 50 ms.
- ``http_scale``: the same page after the city has grown to 100,000 families, compared with
  the 10,000-family run. Target: requests/s ratio ≥ 0.8.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

from bench.city import City
from bench.load import LoadResult, find_wrk, measure
from bench.registry import BenchError, RunContext, register
from bench.results import Figure, figure
from bench.server import Server, gunicorn

FAMILIES = 10_000
SCALE = 10
LOGGED_IN_PARENTS = 200
WORKERS = 2
CONNECTIONS = 16
LOAD_THREADS = 2
WARMUP_S = 2
MEASURE_S = 8


@dataclass(frozen=True)
class HomeRun:
    families: int
    home: LoadResult
    bare: LoadResult | None


def _city(ctx: RunContext) -> City:
    def build() -> City:
        instance = ctx.workdir / "instance"
        instance.mkdir()
        started = time.monotonic()
        city = City.create(instance)
        ctx.stack.callback(city.dispose)
        city.grow_to(FAMILIES)
        ctx.log(f"built {city.families} families in {time.monotonic() - started:.1f} s")
        ctx.log(f"rows: {city.counts()}")
        return city

    return ctx.memo("http.city", build)


def _wrk(ctx: RunContext) -> str | None:
    # A memo cannot hold None apart from "not yet": wrap the answer.
    return ctx.memo("load.wrk", lambda: [find_wrk()])[0]


def _verify(server: Server, cookies: list[tuple[str, str]]) -> None:
    """Every logged-in parent gets their own home page (200 with their child's name), not a
    redirect to the login page: otherwise the benchmark would measure the wrong thing."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for cookie, child_name in cookies:
            conn.request("GET", "/home", headers={"Cookie": cookie})
            response = conn.getresponse()
            body = response.read().decode("utf-8", errors="replace")
            if response.status != 200 or child_name not in body:
                location = response.getheader("Location") or ""
                raise BenchError(
                    f"GET /home answered {response.status} {location} without the child "
                    f"{child_name!r}: the session is not logged in as that parent"
                )
    finally:
        conn.close()


def _run(ctx: RunContext, *, with_bare: bool) -> HomeRun:
    city = _city(ctx)
    wrk = _wrk(ctx)
    logged_in = city.log_in(LOGGED_IN_PARENTS)
    with gunicorn(city.instance, workers=WORKERS, log=ctx.workdir / "gunicorn.log") as server:
        cookies = [(f"{server.cookie_name}={token}", p.child_name) for token, p in logged_in]
        _verify(server, cookies)

        def load(path: str, cookie_values: list[str]) -> LoadResult:
            result = measure(
                server.host, server.port, path, cookie_values, workdir=ctx.workdir, wrk=wrk,
                connections=CONNECTIONS, threads=LOAD_THREADS, warmup_s=WARMUP_S,
                duration_s=MEASURE_S, cpu_seconds=server.cpu_seconds,
            )  # fmt: skip
            ctx.log(f"{city.families} families, GET {path}: {result.summary()}")
            return result

        # Back to back on the same server: the baseline sees the same machine state.
        bare = load("/ping", []) if with_bare else None
        home = load("/home", [cookie for cookie, _ in cookies])
    return HomeRun(families=city.families, home=home, bare=bare)


def _base_run(ctx: RunContext) -> HomeRun:
    return ctx.memo("http.1x", lambda: _run(ctx, with_bare=True))


@register("http_parent_home")
def http_parent_home(ctx: RunContext) -> list[Figure]:
    """Parent home page, 10,000 families, vs. the bare endpoint /ping."""
    run = _base_run(ctx)
    assert run.bare is not None
    name = "http_parent_home"
    return [
        figure(name, "requests_per_s", run.home.requests_per_s, "req/s",
               baselines={"bare_endpoint": run.bare.requests_per_s}, digits=1),
        figure(name, "p95_ms", run.home.p95_ms, "ms",
               baselines={"bare_endpoint": run.bare.p95_ms}),
    ]  # fmt: skip


@register("http_scale")
def http_scale(ctx: RunContext) -> list[Figure]:
    """Parent home page with the data grown 10x (100,000 families), vs. the 1x run."""
    base = _base_run(ctx)
    city = _city(ctx)
    started = time.monotonic()
    city.grow_to(FAMILIES * SCALE)
    ctx.log(f"grew the city to {city.families} families in {time.monotonic() - started:.1f} s")
    ctx.log(f"rows: {city.counts()}")
    grown = ctx.memo("http.10x", lambda: _run(ctx, with_bare=False))
    name = "http_scale"
    return [
        figure(name, "requests_per_s", grown.home.requests_per_s, "req/s",
               baselines={"data_1x": base.home.requests_per_s}, digits=1),
        figure(name, "p95_ms", grown.home.p95_ms, "ms", baselines={"data_1x": base.home.p95_ms}),
    ]  # fmt: skip
