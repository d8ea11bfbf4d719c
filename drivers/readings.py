"""The bounded queue between a driver's thread and whoever takes its readings.

A driver must never block on a slow consumer (it would stop reading the device, and
the device's own buffer would overflow instead, silently): :meth:`ReadingsQueue.put`
never waits. When the queue is full the **oldest** readings are dropped and counted,
so a consumer that comes back finds the newest ones and a count of what it missed.
"""

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadingsQueue(Generic[T]):
    """At most ``maxlen`` readings, oldest first; the oldest are dropped (and counted in
    :attr:`dropped`) when more come.

    ``stop``, when given, is the driver's stop event: a waiting :meth:`get` returns as
    soon as it is set (call :meth:`wake` after setting it).

    Examples
    --------
    >>> q = ReadingsQueue(3)
    >>> q.put_many([1, 2, 3, 4, 5])
    2
    >>> q.get(), q.dropped
    ([3, 4, 5], 2)
    >>> q.get(timeout_s=0.01)
    []
    """

    def __init__(self, maxlen: int, stop: threading.Event | None = None) -> None:
        if not maxlen >= 1:
            raise ValueError(f"a readings queue holds at least 1 reading (got {maxlen})")
        self.maxlen = int(maxlen)
        self.dropped = 0
        self._items: deque[T] = deque(maxlen=self.maxlen)
        self._cond = threading.Condition()
        self._stop = stop

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> int:
        """Queue one reading without waiting; returns how many old ones it pushed out."""
        return self.put_many((item,))

    def put_many(self, items: Iterable[T]) -> int:
        """Queue readings without waiting, in order; returns how many old ones were
        dropped to make room (also added to :attr:`dropped`)."""
        batch = list(items)
        if not batch:
            return 0
        with self._cond:
            dropped = max(len(self._items) + len(batch) - self.maxlen, 0)
            self._items.extend(batch)
            self.dropped += dropped
            self._cond.notify_all()
        return dropped

    def get(self, timeout_s: float = 0.0, count: int = 1) -> list[T]:
        """Every queued reading, oldest first, after waiting up to ``timeout_s`` for at
        least ``count`` of them (fewer when the time runs out or the driver stops)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._items) < count and not self._stopped():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take()

    def drain(self) -> list[T]:
        """Every queued reading now, without waiting."""
        with self._cond:
            return self._take()

    def wake(self) -> None:
        """Wake every waiting :meth:`get` (after the driver's stop event was set)."""
        with self._cond:
            self._cond.notify_all()

    def _stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _take(self) -> list[T]:
        """The items, emptied (caller holds the lock)."""
        out = list(self._items)
        self._items.clear()
        return out
