"""A desktop notification server (freedesktop ``org.freedesktop.Notifications``) on a private
D-Bus session bus, so a test can see the notifications Chromium really shows and click them.

Chromium on Linux hands web notifications to this D-Bus service when one owns the name on its
session bus. A click is the service's ``ActionInvoked`` signal with the ``default`` action:
Chromium then fires a trusted ``notificationclick`` in the service worker, which may focus or
open a window (a script-made event may not). There is no DevTools command that clicks a
notification, so this is the one real way to test what a tap does.

The bus is ``dbus-daemon`` (Debian package ``dbus``) on a socket in a temporary folder; the
server speaks D-Bus through ``jeepney`` (pure Python) in a background thread.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
WAIT_S = 10.0


class DesktopUnavailableError(RuntimeError):
    """dbus-daemon or jeepney is missing, or the bus did not start."""


@dataclass(frozen=True)
class ShownNotification:
    """One ``Notify`` call: what the desktop was asked to show."""

    id: int
    app_name: str
    summary: str
    body: str
    actions: tuple[str, ...]


@dataclass
class NotificationServer:
    """The fake desktop. ``bus_address`` goes into the browser's DBUS_SESSION_BUS_ADDRESS."""

    bus_address: str
    shown: list[ShownNotification] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    #: What went wrong in the server's thread, if anything.
    error: BaseException | None = None
    _outbox: queue.Queue[Any] = field(default_factory=queue.Queue)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(
        self, predicate: Callable[[ShownNotification], bool], timeout: float = WAIT_S
    ) -> ShownNotification:
        """The first notification shown that matches ``predicate`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for note in self.shown:
                    if predicate(note):
                        return note
            time.sleep(0.05)
        raise AssertionError(
            f"no matching notification was shown; shown: {self.shown}, error: {self.error!r}"
        )

    def click(self, note: ShownNotification) -> None:
        """What a tap on the notification's body sends to the browser."""
        self._outbox.put(("ActionInvoked", "us", (note.id, "default")))


def _serve(server: NotificationServer, ready: threading.Event, stop: threading.Event) -> None:
    try:
        _answer(server, ready, stop)
    except BaseException as error:  # reported by wait_for() and at start-up
        server.error = error
        raise


def _answer(server: NotificationServer, ready: threading.Event, stop: threading.Event) -> None:
    from jeepney import DBusAddress, HeaderFields, MessageType, new_method_return, new_signal
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    emitter = DBusAddress(PATH, interface=NAME)
    with open_dbus_connection(server.bus_address) as conn:
        conn.send_and_get_reply(message_bus.RequestName(NAME, 0x4), timeout=WAIT_S)
        ready.set()
        next_id = 1
        while not stop.is_set():
            while not server._outbox.empty():
                member, signature, body = server._outbox.get()
                conn.send(new_signal(emitter, member, signature, body))
            try:
                message = conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            header = message.header
            if header.message_type != MessageType.method_call:
                continue
            member = header.fields.get(HeaderFields.member)
            if member == "GetCapabilities":
                conn.send(new_method_return(message, "as", (["actions", "body"],)))
            elif member == "GetServerInformation":
                conn.send(new_method_return(message, "ssss", ("kita-test", "kita", "1", "1.2")))
            elif member == "Notify":
                app_name, replaces_id, _icon, summary, body, actions, _hints, _timeout = (
                    message.body
                )
                note_id = replaces_id or next_id
                next_id += 0 if replaces_id else 1
                with server._lock:
                    server.shown.append(
                        ShownNotification(note_id, app_name, summary, body, tuple(actions))
                    )
                conn.send(new_method_return(message, "u", (note_id,)))
            elif member == "CloseNotification":
                (note_id,) = message.body
                with server._lock:
                    server.closed.append(note_id)
                conn.send(new_method_return(message))
                conn.send(new_signal(emitter, "NotificationClosed", "uu", (note_id, 3)))
            else:
                conn.send(new_method_return(message))


@contextmanager
def running_notification_server() -> Iterator[NotificationServer]:
    """A private session bus with the fake desktop on it; both stop afterwards."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        raise DesktopUnavailableError("dbus-daemon is missing (Debian package dbus)")
    try:
        import jeepney  # noqa: F401
    except ImportError as exc:
        raise DesktopUnavailableError("jeepney is missing: run `make install`") from exc
    folder = Path(tempfile.mkdtemp(prefix="kita-dbus-"))
    address = f"unix:path={folder / 'bus'}"
    process = subprocess.Popen(
        [daemon, "--session", "--nofork", "--nopidfile", f"--address={address}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    thread: threading.Thread | None = None
    try:
        deadline = time.monotonic() + WAIT_S
        while not (folder / "bus").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise DesktopUnavailableError(f"dbus-daemon did not start ({process.poll()})")
            time.sleep(0.02)
        server = NotificationServer(address)
        ready = threading.Event()
        thread = threading.Thread(target=_serve, args=(server, ready, stop), daemon=True)
        thread.start()
        if not ready.wait(WAIT_S):
            raise DesktopUnavailableError(
                f"the notification server did not get its bus name: {server.error!r}"
            )
        yield server
    finally:
        stop.set()
        if thread is not None:
            thread.join(WAIT_S)
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(5)
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
