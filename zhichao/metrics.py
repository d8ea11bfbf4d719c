"""What the edge's and the center's Prometheus metrics share: the address setting, the
HTTP server and a short cache for numbers that cost a query.

Each process makes its own :class:`~prometheus_client.CollectorRegistry` instead of the
library's global one, so a test (or the demo) can run a unit and a center in one process,
each with its own page. Numbers that already exist somewhere (a unit's counts, an
outbox's depth, the cases table) are read when Prometheus scrapes, by a custom collector,
rather than copied into metric objects on every round of the work.
"""

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from prometheus_client import CollectorRegistry, start_http_server
from pydantic import AfterValidator

log = logging.getLogger(__name__)

T = TypeVar("T")

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d+)$")
PORT_MIN = 1024
"""The lowest port allowed: below it the services (which run as their own user) could
not bind, and the well-known services live there."""


def metrics_address(text: str) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets) with a port from 1024 to 65535; ValueError
    saying what is allowed otherwise.

    >>> metrics_address("127.0.0.1:9464")
    '127.0.0.1:9464'
    >>> metrics_address("[::1]:9464")
    '[::1]:9464'
    >>> metrics_address("127.0.0.1:80")
    Traceback (most recent call last):
    ...
    ValueError: port must be from 1024 to 65535 (got 80)
    """
    found = _ADDRESS.match(text)
    if found is None:
        raise ValueError(f"must be HOST:PORT, e.g. 127.0.0.1:9464 (got {text!r})")
    port = int(found.group(2))
    if not PORT_MIN <= port <= 65535:
        raise ValueError(f"port must be from {PORT_MIN} to 65535 (got {port})")
    return text


MetricsAddress = Annotated[str, AfterValidator(metrics_address)]
"""Where a process serves its metrics: ``HOST:PORT``."""


def split_address(address: str) -> tuple[str, int]:
    """Host (without IPv6 brackets) and port of a checked address."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsServer:
    """The metrics page of one registry on ``address`` (``/metrics`` and ``/``), served
    by a daemon thread of prometheus_client until :meth:`stop`."""

    def __init__(self, registry: CollectorRegistry, address: str) -> None:
        host, port = split_address(address)
        self.address = address
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        log.info("metrics on http://%s/metrics", address)

    def stop(self) -> None:
        """Close the listening socket and end the thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)


class Cached(Generic[T]):
    """The value of ``read`` at most ``ttl_s`` old: however often (and however many)
    Prometheus servers scrape, the database is asked at most once per ``ttl_s``."""

    def __init__(self, read: Callable[[], T], ttl_s: float) -> None:
        self.read = read
        self.ttl_s = ttl_s
        self._value: T | None = None
        self._at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> T:
        """The cached value, read again once it is older than ``ttl_s``."""
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at >= self.ttl_s:
                self._value, self._at = self.read(), now
            return self._value
