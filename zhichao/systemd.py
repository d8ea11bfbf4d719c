"""Telling systemd how a long-running zhichao process is doing (``sd_notify``), without a
dependency.

A roadside unit and a center run as ``Type=notify`` services with a watchdog
(``deploy/systemd/``): systemd waits for ``READY=1`` before it counts the service as
started, restarts it when ``WATCHDOG=1`` stops arriving (a main loop stuck on a device
or a lock is restarted rather than left silent for weeks), shows the last ``STATUS=``
line in ``systemctl status``, and knows from ``STOPPING=1`` that a slow stop (an outbox
being flushed) is a stop and not a hang.

The protocol is one datagram per message to the ``AF_UNIX`` socket named by
``NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``). Run by hand
or in tests, that variable is not set and every call here does nothing, quietly: the
same code runs under systemd and outside it.
"""

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

STATUS_EVERY_S = 30.0
"""How often :meth:`Notifier.tick` refreshes the status line: often enough for a person
looking at ``systemctl status``, rarely enough that working out the line costs nothing."""


def notify_address(env: Mapping[str, str] = os.environ) -> str | bytes | None:
    """The address of systemd's notification socket, or None when not run by systemd
    (an abstract name is given as ``@name`` and addressed with a leading NUL byte)."""
    where = env.get("NOTIFY_SOCKET", "")
    if not where:
        return None
    if where.startswith("@"):
        return b"\0" + where[1:].encode()
    return where


def sd_notify(message: str, env: Mapping[str, str] = os.environ) -> bool:
    """Send one notification (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``, several lines
    for several at once); True if it was sent. Outside systemd: nothing, False. A socket
    that cannot be reached is logged and ignored: a service is never stopped because its
    manager could not be told about it."""
    address = notify_address(env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", env.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """How often (s) to send ``WATCHDOG=1``: half of systemd's ``WATCHDOG_USEC``, the
    margin ``sd_watchdog_enabled(3)`` recommends, so one late loop round is no restart.
    None when there is no watchdog, or when ``WATCHDOG_PID`` names another process (the
    variables were inherited from a parent the watchdog is meant for)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """The notifications of one service's life: :meth:`ready` once started, :meth:`tick`
    from its main loop as often as it likes, :meth:`stopping` when it is told to stop.
    Outside systemd every method does nothing."""

    def __init__(self, env: Mapping[str, str] = os.environ,
                 clock: Callable[[], float] = time.monotonic,
                 status_every_s: float = STATUS_EVERY_S):
        self.env = dict(env)
        self.enabled = notify_address(self.env) is not None
        self.watchdog_s = watchdog_interval(self.env) if self.enabled else None
        self.status_every_s = status_every_s
        self._clock = clock
        self._petted_at = float("-inf")
        self._status_at = float("-inf")

    def _send(self, message: str) -> bool:
        return self.enabled and sd_notify(message, self.env)

    def ready(self, text: str | None = None) -> None:
        """The service has started (systemd holds ``systemctl start`` until this)."""
        self._send("READY=1" + (f"\nSTATUS={_line(text)}" if text else ""))
        self._status_at = self._clock()

    def status(self, text: str) -> None:
        """A one-line summary for ``systemctl status``."""
        self._send(f"STATUS={_line(text)}")
        self._status_at = self._clock()

    def stopping(self, text: str | None = None) -> None:
        """The service is stopping: what follows is its orderly end, not a hang."""
        self._send("STOPPING=1" + (f"\nSTATUS={_line(text)}" if text else ""))

    def tick(self, summary: Callable[[], str] | None = None) -> None:
        """``WATCHDOG=1`` if half the watchdog interval has passed since the last one, and
        the status line from ``summary`` if :attr:`status_every_s` has passed; cheap
        enough for every round of a main loop (``summary`` is called only when due)."""
        if not self.enabled:
            return
        now = self._clock()
        if self.watchdog_s is not None and now - self._petted_at >= self.watchdog_s:
            self._send("WATCHDOG=1")
            self._petted_at = now
        if summary is not None and now - self._status_at >= self.status_every_s:
            self.status(summary())


def _line(text: str) -> str:
    """One line: a newline would start another assignment in the datagram."""
    return " ".join(text.split())
