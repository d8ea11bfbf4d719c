"""The wait between reconnection attempts: short after a working connection, doubling
while a device keeps failing, so a missing device is not hammered and a device that
blinked is back at once.

Every driver that owns a connection (serial port, Modbus link, camera) keeps one
:class:`Backoff`; Klipper's ``serialhdl.py`` waits the same way.
"""

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """A delay that grows by ``factor`` on each :meth:`next`, up to ``max_s``, and goes
    back to ``min_s`` on :meth:`reset`.

    Parameters
    ----------
    min_s : the first wait, and the wait after a connection that worked, seconds.
    max_s : the longest wait, seconds (a device that comes back is found within it).
    factor : growth of the wait after each failure (above 1).

    Examples
    --------
    >>> b = Backoff(0.1, 0.5)
    >>> [b.next() for _ in range(5)]
    [0.1, 0.2, 0.4, 0.5, 0.5]
    >>> b.reset(), b.next(), b.next()
    (0.1, 0.1, 0.2)
    """

    min_s: float = 0.1
    max_s: float = 5.0
    factor: float = 2.0
    delay_s: float = field(init=False)

    def __post_init__(self) -> None:
        if not (self.min_s > 0 and self.max_s > 0):
            raise ValueError(f"backoff waits must be above 0 (got min_s={self.min_s}, "
                             f"max_s={self.max_s})")
        if not self.factor > 1:
            raise ValueError(f"backoff factor must be above 1 (got {self.factor})")
        self.delay_s = self.min_s

    def next(self) -> float:
        """The wait before the next attempt, seconds; the one after it is longer."""
        delay_s = self.delay_s
        self.delay_s = min(self.delay_s * self.factor, self.max_s)
        return delay_s

    def reset(self) -> float:
        """A connection worked: the next wait is ``min_s`` again; returns ``min_s`` (the
        wait after a connection that delivered, for drivers that wait before retrying
        even then)."""
        self.delay_s = self.min_s
        return self.min_s
