"""Login throttling holds across two gunicorn worker processes, and an attacker cannot use it to
lock the real user out."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy.orm import Session

from tests.conftest import MASTER_KEY, TEST_SECRET
from tests.factories import PASSWORD, make_user

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Browser:
    """A minimal client with its own cookie and source address, one connection per request."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source, self.cookie = port, source, ""

    def request(self, method: str, path: str, body: str = "") -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=10, source_address=(self.source, 0)
        )
        headers = {"Connection": "close"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        found = response.getheader("Set-Cookie")
        if found:
            self.cookie = found.split(";", 1)[0]
        result = (response.status, dict(response.getheaders()), text)
        conn.close()
        return result

    def login(self, email: str, password: str) -> tuple[int, dict[str, str]]:
        _, _, page = self.request("GET", "/login")
        match = CSRF.search(page)
        assert match
        body = urlencode({"email": email, "password": password, "csrf_token": match.group(1)})
        status, headers, _ = self.request("POST", "/login", body)
        return status, headers


@pytest.fixture
def gunicorn(database_url: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = _free_port()
    log = tmp_path / "access.log"
    env = dict(
        os.environ,
        KITA_DATABASE_URL=database_url,
        KITA_SECRET_KEY=TEST_SECRET,
        KITA_COOKIE_SECURE="0",
        KITA_TESTING="1",
        KITA_PASSWORD_HASHING="test",
        KITA_INSTANCE_PATH=str(tmp_path / "instance"),
        KITA_MASTER_KEY=MASTER_KEY,
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            str(log),
            "--access-logformat",
            "%(p)s %(m)s %(U)s %(s)s",
            "kita:create_app()",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not start")
        yield port, log
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_throttle_is_shared_by_workers_and_spares_the_victim(
    gunicorn: tuple[int, Path], db: Session
) -> None:
    port, log = gunicorn
    victim = make_user(db, email="victim@example.org")
    attacker = Browser(port, "127.0.0.2")
    statuses = [attacker.login(victim.email, f"guess-{n}-wrong")[0] for n in range(5)]
    assert statuses == [401] * 5
    blocked, headers = attacker.login(victim.email, PASSWORD)
    assert blocked == 429  # even the right password is refused from this client now
    assert int(headers["Retry-After"]) > 0
    # The real user, from her own address, is not locked out.
    assert Browser(port, "127.0.0.1").login(victim.email, PASSWORD)[0] == 302
    # Both worker processes refuse: repeat the blocked attempt until each has answered it.
    refusing: set[str] = set()
    for _ in range(30):
        assert attacker.login(victim.email, PASSWORD)[0] == 429
        time.sleep(0.05)
        refusing = {
            line.split()[0]
            for line in log.read_text().splitlines()
            if line.endswith(" POST /login 429")
        }
        if len(refusing) == 2:
            break
    assert len(refusing) == 2
