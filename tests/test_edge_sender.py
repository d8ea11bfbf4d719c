"""The sender's ack timer: how long a packet waits for its ack before it is sent again
(the sender over real sockets is in test_transport_faults.py)."""

import pytest

from edge.sender import AckTimer


def test_the_wait_starts_at_the_floor_and_learns_a_slow_center():
    timer = AckTimer(floor_s=0.5, ceiling_s=30.0)
    assert timer.timeout_s == 0.5
    for _ in range(20):
        timer.sample(3.0)
    # a steady 3 s: the wait settles just above it, not at the 0.5 s floor
    assert 3.0 < timer.timeout_s < 3.5
    assert timer.smoothed_s == pytest.approx(3.0)


def test_a_fast_center_keeps_the_floor():
    timer = AckTimer(floor_s=2.0, ceiling_s=30.0)
    for took in (0.05, 0.08, 0.04, 0.06):
        timer.sample(took)
    assert timer.timeout_s == 2.0


def test_the_first_sample_allows_for_variation():
    timer = AckTimer(floor_s=0.1, ceiling_s=30.0)
    timer.sample(1.0)
    # RFC 6298: the first measurement R gives R + 4 * R/2
    assert timer.timeout_s == pytest.approx(3.0)


def test_jitter_widens_the_wait():
    steady, jittery = AckTimer(0.1, 30.0), AckTimer(0.1, 30.0)
    for n in range(40):
        steady.sample(1.0)
        jittery.sample(0.5 if n % 2 else 1.5)
    assert steady.smoothed_s == pytest.approx(jittery.smoothed_s, rel=0.15)
    assert jittery.timeout_s > steady.timeout_s + 1.0


def test_backoff_doubles_once_a_wait_up_to_the_ceiling_and_a_sample_resets_it():
    timer = AckTimer(floor_s=1.0, ceiling_s=5.0)
    timer.backoff(now=100.0)
    assert timer.timeout_s == 2.0
    timer.backoff(now=100.5)  # more packets ran out within the same wait: no change
    timer.backoff(now=101.9)
    assert timer.timeout_s == 2.0
    timer.backoff(now=102.0)
    timer.backoff(now=106.0)
    assert timer.timeout_s == 5.0
    timer.sample(0.2)
    assert timer.timeout_s == 1.0


def test_a_sample_beyond_the_ceiling_is_capped():
    timer = AckTimer(floor_s=1.0, ceiling_s=5.0)
    timer.sample(60.0)
    assert timer.timeout_s == 5.0
