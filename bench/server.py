"""Run the app under gunicorn on a free loopback port, for as long as a ``with`` block lasts."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.registry import BenchError

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    pid: int
    cookie_name: str = "kita_session"  # KITA_COOKIE_SECURE=0: no __Host- prefix

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the gunicorn master and its workers. Unlike
        wall-clock throughput it hardly changes when other programs load the machine."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # The command name (field 2) may hold spaces: split after its closing ")".
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == self.pid or ppid == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total / ticks


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def app_environment(instance: Path) -> dict[str, str]:
    """The caller's environment without any KITA_* setting (so the SQLite default in
    ``instance`` is used), plus plain-HTTP cookies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KITA_")}
    env["KITA_INSTANCE_PATH"] = str(instance)
    env["KITA_COOKIE_SECURE"] = "0"
    return env


def _ping(host: str, port: int) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def gunicorn(instance: Path, *, workers: int = 2, log: Path) -> Iterator[Server]:
    """Start ``gunicorn --workers N 'kita:create_app()'`` and stop it (and its workers) after."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(workers),
        "--bind", f"{HOST}:{port}",
        "--graceful-timeout", "5",
        "kita:create_app()",
    ]  # fmt: skip
    with log.open("ab") as log_file:
        # A session of its own, so the master and its workers can be ended together.
        process = subprocess.Popen(
            command,
            env=app_environment(instance),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ping(HOST, port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise BenchError(f"gunicorn did not start (exit {process.poll()}):\n{tail}")
            time.sleep(0.2)
        yield Server(HOST, port, process.pid)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)
    # Whatever is left of this gunicorn's process group (a stuck worker) is killed.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
