"""The drivers' shared reconnect backoff and bounded readings queue."""

import threading
import time

import pytest

from drivers.backoff import Backoff
from drivers.readings import ReadingsQueue


def test_backoff_doubles_up_to_its_ceiling_and_resets_on_success():
    b = Backoff(0.1, 5.0)
    waits = [b.next() for _ in range(8)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])
    assert b.reset() == 0.1
    assert [b.next(), b.next()] == pytest.approx([0.1, 0.2])


def test_backoff_takes_another_factor():
    b = Backoff(1.0, 100.0, factor=3.0)
    assert [b.next() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]


@pytest.mark.parametrize(("kwargs", "says"), [({"min_s": 0.0}, "above 0"),
                                              ({"max_s": -1.0}, "above 0"),
                                              ({"factor": 1.0}, "factor must be above 1")])
def test_backoff_refuses_waits_that_never_grow(kwargs, says):
    with pytest.raises(ValueError, match=says):
        Backoff(**kwargs)


def test_queue_keeps_the_newest_and_counts_the_oldest_it_drops():
    q: ReadingsQueue[int] = ReadingsQueue(4)
    assert q.put_many(range(3)) == 0
    assert q.put(3) == 0 and q.put(4) == 1
    assert q.put_many(range(5, 12)) == 7  # more than it holds at once
    assert len(q) == 4 and q.dropped == 8
    assert q.get() == [8, 9, 10, 11]
    assert q.drain() == [] and q.dropped == 8


def test_queue_get_waits_for_a_reading_from_another_thread():
    q: ReadingsQueue[str] = ReadingsQueue(10)
    threading.Timer(0.1, q.put, args=("late",)).start()
    t0 = time.monotonic()
    assert q.get(timeout_s=5.0) == ["late"]
    assert time.monotonic() - t0 < 4.0


def test_queue_get_waits_for_count_and_returns_fewer_when_time_runs_out():
    q: ReadingsQueue[int] = ReadingsQueue(10)
    q.put(1)
    t0 = time.monotonic()
    assert q.get(timeout_s=0.2, count=3) == [1]
    assert time.monotonic() - t0 >= 0.19
    timer = threading.Timer(0.05, q.put_many, args=([2, 3],))
    timer.start()
    assert q.get(timeout_s=5.0, count=2) == [2, 3]
    timer.join()


def test_queue_get_returns_at_once_when_its_driver_stops():
    stop = threading.Event()
    q: ReadingsQueue[int] = ReadingsQueue(10, stop=stop)

    def stop_driver() -> None:
        stop.set()
        q.wake()

    threading.Timer(0.1, stop_driver).start()
    t0 = time.monotonic()
    assert q.get(timeout_s=10.0) == []
    assert time.monotonic() - t0 < 5.0


def test_queue_put_never_blocks_on_a_consumer_that_holds_nothing():
    q: ReadingsQueue[int] = ReadingsQueue(1)
    t0 = time.monotonic()
    for i in range(10_000):
        q.put(i)
    assert time.monotonic() - t0 < 2.0 and q.drain() == [9999] and q.dropped == 9999


def test_queue_must_hold_something():
    with pytest.raises(ValueError, match="at least 1"):
        ReadingsQueue(0)
