"""The push-service emulator ``web-push-testing`` (npm) as a test fixture.

It checks VAPID, decrypts aes128gcm payloads, keeps them for reading back and can expire a
subscription. It is started on a free loopback port (the package's own CLI would bind every
interface and keep a pid file in the working directory) and stopped after the tests.

Use the fixture ``push_emulator`` (import it into a test module or list this module in
``pytest_plugins``) or the context manager :func:`running_push_emulator`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from kita.push.endpoints import PushServiceAllowList

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "node_modules" / "web-push-testing"
START_TIMEOUT_S = 20.0
HOST = "127.0.0.1"

# The package's server, bound to 127.0.0.1 instead of every interface.
_LAUNCHER = """
const [serverPath, modelPath, port] = process.argv.slice(1);
const TestingServer = require(serverPath);
const {PushApiModel} = require(modelPath);
const server = new TestingServer(new PushApiModel(), Number(port));
const listen = server._app.listen.bind(server._app);
server._app.listen = (p, callback) => listen(p, '127.0.0.1', callback);
server.startServer();
"""


class EmulatorUnavailableError(RuntimeError):
    """Node.js or the npm package is missing, or the emulator did not start."""


@dataclass(frozen=True)
class PushEmulator:
    """A running emulator. Its endpoints are ``http://localhost:<port>/notify/<hash>``."""

    port: int

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def allow_list(self) -> PushServiceAllowList:
        """The real allow-list plus this emulator's origin, as tests configure it."""
        return PushServiceAllowList.with_origins([self.origin])

    def _post(self, path: str, json: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(f"http://{HOST}:{self.port}{path}", json=json, timeout=10)

    def create_subscription(self, application_server_key: str) -> dict[str, Any]:
        """A subscription bound to ``application_server_key``, shaped like the browser's
        ``PushSubscription.toJSON()`` (endpoint, keys.p256dh, keys.auth)."""
        response = self._post("/subscribe", {"applicationServerKey": application_server_key})
        response.raise_for_status()
        data = response.json()["data"]
        return {"endpoint": data["endpoint"], "keys": data["keys"]}

    @staticmethod
    def client_hash(subscription: dict[str, Any]) -> str:
        return str(subscription["endpoint"]).rsplit("/", 1)[1]

    def get_notifications(self, subscription: dict[str, Any]) -> list[str]:
        """The decrypted payloads this subscription received, oldest first."""
        response = self._post("/get-notifications", {"clientHash": self.client_hash(subscription)})
        response.raise_for_status()
        return list(response.json()["data"]["messages"])

    def expire(self, subscription: dict[str, Any]) -> None:
        """From now on the emulator answers 410 Gone for this subscription."""
        response = self._post(f"/expire-subscription/{self.client_hash(subscription)}")
        response.raise_for_status()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        return requests.post(f"http://{HOST}:{port}/status", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_push_emulator() -> Iterator[PushEmulator]:
    """Start the emulator on a free port, wait until it answers, and stop it afterwards."""
    node = shutil.which("node")
    if node is None:
        raise EmulatorUnavailableError("Node.js is not installed (Debian package nodejs)")
    if not (PACKAGE / "src" / "server.js").is_file():
        raise EmulatorUnavailableError(
            "the npm package web-push-testing is missing: run `make node-deps` (npm ci)"
        )
    port = _free_port()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [
                node,
                "-e",
                _LAUNCHER,
                str(PACKAGE / "src" / "server.js"),
                str(PACKAGE / "src" / "PushApiModel.js"),
                str(port),
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it ends all of it
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _answers(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    tail = output.read().decode("utf-8", "replace")[-2000:]
                    raise EmulatorUnavailableError(
                        f"web-push-testing did not start (exit {process.poll()}): {tail}"
                    )
                time.sleep(0.05)
            yield PushEmulator(port)
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def push_emulator() -> Iterator[PushEmulator]:
    """One emulator per test process (each xdist worker has its own port)."""
    try:
        with running_push_emulator() as emulator:
            yield emulator
    except EmulatorUnavailableError as error:
        pytest.fail(str(error))
