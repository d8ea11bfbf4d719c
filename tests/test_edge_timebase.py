"""Trusted time: the kernel's NTP state read for real and mapped; recorded readings of a
chrony-disciplined host played through the timebase (synced, then holdover with a
growing bound, then free-running); GPS as the source while fresh; never a trusted
status for an unsynchronised clock."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from edge.timebase import ClockState, Timebase, TimeSettings
from edge.timebase.gps import GpsClock
from edge.timebase.kernel import (
    STA_NANO,
    STA_PLL,
    STA_UNSYNC,
    TIME_ERROR,
    TIME_OK,
    KernelClock,
    LastSync,
    kernel_state,
    read_kernel_clock,
)
from zhichao.errors import ConfigError
from zhichao.settings import validate

pytestmark = pytest.mark.timeout(30)

THIS_MACHINE = KernelClock(state=TIME_ERROR, status_flags=STA_UNSYNC, maxerror_us=16_000_000,
                           esterror_us=16_000_000, offset_us=0.0, freq_ppm=0.0)
"""adjtimex as recorded on the test machines (no time daemon): returns TIME_ERROR,
status 0x0040, maxerror and esterror 16 s, offset and freq 0, tolerance 500 ppm."""


def chrony(maxerror_us: int, **kw: object) -> KernelClock:
    """A chrony-disciplined host as ``adjtimex`` shows it: TIME_OK, STA_PLL | STA_NANO,
    a frequency learnt, a maximum error of a few ms (growing 500 µs/s between updates)."""
    fields = {"state": TIME_OK, "status_flags": STA_PLL | STA_NANO,
              "maxerror_us": maxerror_us, "esterror_us": 120, "offset_us": -3.2,
              "freq_ppm": -12.3}
    fields.update(kw)
    return KernelClock(**fields)  # type: ignore[arg-type]


T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SETTINGS = TimeSettings()


# The kernel, for real ------------------------------------------------------------------

def test_the_real_kernel_clock_reads_sane_numbers_and_is_never_trusted_unsynchronised():
    k = read_kernel_clock()
    assert k.state in range(6)
    assert 0 <= k.maxerror_us <= 16_000_000 and 0 <= k.esterror_us <= 16_000_000
    assert k.tolerance_ppm == pytest.approx(500.0)
    assert abs(k.freq_ppm) <= 500.0
    state = kernel_state(k, None, time.monotonic(), SETTINGS)
    if k.unsynchronised or k.state == TIME_ERROR:
        assert state.status == "free_running" and state.source == "none"
        held = kernel_state(k, LastSync(time.monotonic() - 10, T0, 4.0, "kernel"),
                            time.monotonic(), SETTINGS)
        assert held.status == "holdover" and held.uncertainty_ms > 4.0
    else:   # a host whose daemon runs: synced exactly when maxerror is small enough
        assert (state.status == "synced") == (k.maxerror_us < 100_000)
        assert state.status != "synced" or state.uncertainty_ms == k.maxerror_us / 1000


def test_a_timebase_on_the_real_kernel_gives_a_state_and_words():
    tb = Timebase(SETTINGS)
    state = tb.state()
    assert state.status in ("synced", "holdover", "free_running")
    assert "kernel clock" in tb.describe()
    assert abs(tb.to_utc(time.monotonic()) - datetime.now(UTC)) < timedelta(seconds=1)


# Recorded readings ---------------------------------------------------------------------

def test_this_machines_reading_is_free_running_or_holdover_never_synced():
    assert THIS_MACHINE.unsynchronised and THIS_MACHINE.flag_names() == ["STA_UNSYNC"]
    assert kernel_state(THIS_MACHINE, None, 50.0, SETTINGS).status == "free_running"
    last = LastSync(0.0, T0, 3.0, "kernel")
    state = kernel_state(THIS_MACHINE, last, 50.0, SETTINGS)
    assert state == ClockState("holdover", 3.0 + 50 * 20e-3, "kernel", T0)


@pytest.mark.parametrize("clock", [
    chrony(3_000, status_flags=STA_PLL | STA_UNSYNC),        # daemon says unsynchronised
    chrony(3_000, state=TIME_ERROR),                          # kernel says error
    chrony(150_000),                                          # bound beyond 100 ms
])
def test_no_trust_without_every_condition(clock):
    assert kernel_state(clock, None, 0.0, SETTINGS).status == "free_running"


def test_a_chrony_host_is_synced_with_its_maxerror_as_bound():
    state = kernel_state(chrony(3_500), None, 0.0, SETTINGS, now_utc=T0)
    assert state == ClockState("synced", 3.5, "kernel", T0)
    assert "STA_PLL" in chrony(3_500).flag_names()


class Recording:
    """Plays recorded kernel readings: each call returns the one for the time set."""

    def __init__(self) -> None:
        self.clock = chrony(3_000)

    def __call__(self) -> KernelClock:
        return self.clock


def test_losing_sync_gives_holdover_with_a_growing_bound_then_free_running():
    """chrony stops at t = 1000 s: the kernel's maxerror grows 500 µs/s and passes 100 ms
    after 194 s; from then the unit holds over from its last synced bound at 20 ppm, and
    after an hour it is free-running."""
    rec = Recording()
    tb = Timebase(SETTINGS, read_kernel=rec)
    for t in range(0, 1001, 100):
        assert tb.state(float(t)).status == "synced"
    states = {}
    for t in range(1001, 1000 + 194 + 3600 + 10):
        rec.clock = chrony(3_000 + 500 * (t - 1000))
        if t - 1000 > 16_000:
            rec.clock = chrony(16_000_000, status_flags=STA_UNSYNC, state=TIME_ERROR)
        states[t] = tb.state(float(t))
    last_synced = max(t for t, s in states.items() if s.status == "synced")
    assert last_synced == 1000 + 193                      # maxerror 99.5 ms
    bound_then = 3.0 + 0.5 * 193
    hold = [states[t] for t in (last_synced + 1, last_synced + 600, last_synced + 3600)]
    assert [s.status for s in hold] == ["holdover"] * 3
    assert hold[0].uncertainty_ms == pytest.approx(bound_then + 20e-3)
    assert hold[2].uncertainty_ms == pytest.approx(bound_then + 3600 * 20e-3)
    assert hold[0].uncertainty_ms < hold[1].uncertainty_ms < hold[2].uncertainty_ms
    assert states[last_synced + 3601].status == "free_running"
    assert states[last_synced + 3601].uncertainty_ms == float("inf")
    assert "above 100 ms" in tb.describe(float(last_synced + 3601))
    rec.clock = chrony(2_000)                            # chrony back
    assert tb.state(9000.0).status == "synced"


# GPS -----------------------------------------------------------------------------------

def rmc(second: datetime, t_mono: float, valid: bool = True) -> dict:
    return {"kind": "gps", "sentence": "RMC", "utc": second, "valid": valid,
            "t_host_s": t_mono}


def zda(second: datetime, t_mono: float) -> dict:
    return {"kind": "gps", "sentence": "ZDA", "utc": second, "valid": True,
            "t_host_s": t_mono}


WALL_MINUS_MONO = T0.timestamp() - 100.0
"""Recorded pairing of the clocks: monotonic 100 s is wall T0."""


def feed_seconds(tb: Timebase, first_mono: float, seconds: int, offset_s: float,
                 latencies_s: list[float]) -> None:
    """A receiver whose UTC is ``offset_s`` ahead of the wall clock, RMC and ZDA at the
    given latencies after each second."""
    for k in range(seconds):
        mono = first_mono + k
        utc = datetime.fromtimestamp(mono + WALL_MINUS_MONO + offset_s, UTC)
        second = utc.replace(microsecond=0)
        base = mono - (utc - second).total_seconds()     # monotonic of the UTC second
        lat = latencies_s[k % len(latencies_s)]
        tb.feed_gps(rmc(second, base + lat), WALL_MINUS_MONO)
        tb.feed_gps(zda(second, base + lat + 0.02), WALL_MINUS_MONO)


def test_gps_is_the_source_when_the_kernel_is_unsynchronised():
    tb = Timebase(SETTINGS, read_kernel=lambda: THIS_MACHINE, gps_name="gps1")
    feed_seconds(tb, 100.0, 10, 0.0031, [0.05])
    state = tb.state(109.5)
    assert (state.status, state.source) == ("synced", "gps")
    assert abs(tb.gps.offset_s - 0.0031) <= tb.gps.uncertainty_s
    text = tb.describe(109.5)
    assert "STA_UNSYNC" in text and "GPS on gps1 fresh, offset" in text
    # stale: holdover from GPS at the undisciplined drift, then free-running
    held = tb.state(109.5 + 10)
    assert (held.status, held.source) == ("holdover", "gps")
    assert held.uncertainty_ms == pytest.approx(state.uncertainty_ms + 10 * 100e-3, rel=1e-3)
    assert tb.state(109.5 + 3700).status == "free_running"


def test_sentences_noted_late_by_a_busy_host_move_neither_the_offset_nor_its_bound():
    """A receiver 50 ms after each second (RMC, then ZDA 20 ms on); the host notes every
    third second's sentences 170 ms later (within the window's width) and every
    seventh's 700 ms later (beyond it). After every second the truth is within the
    bound, and the offset is that of the sentences noted on time alone: resting the
    bound on the slowest sentence would have put it 45 ms off with a bound of 5 ms."""
    on_time, busy = GpsClock(SETTINGS), GpsClock(SETTINGS)
    tb, tb_on_time = (Timebase(SETTINGS, read_kernel=lambda: THIS_MACHINE) for _ in "ab")
    tb.gps, tb_on_time.gps = busy, on_time
    for k in range(30):
        late_s = 0.7 if k % 7 == 6 else 0.17 if k % 3 == 2 else 0.0
        feed_seconds(tb, 100.0 + k, 1, -0.4, [0.05 + late_s])
        feed_seconds(tb_on_time, 100.0 + k, 1, -0.4, [0.05])
        assert abs(busy.offset_s + 0.4) <= busy.uncertainty_s, k
        assert busy.offset_s == pytest.approx(on_time.offset_s, abs=1e-9), k
        assert busy.uncertainty_s == pytest.approx(on_time.uncertainty_s, abs=1e-3), k
    assert busy.contradictions == 0 and busy.late == 2 * 4  # RMC and ZDA of 4 seconds


def test_a_wall_clock_stepped_forward_is_followed_after_a_second():
    clock = GpsClock(SETTINGS)
    tb = Timebase(SETTINGS, read_kernel=lambda: THIS_MACHINE)
    tb.gps = clock
    feed_seconds(tb, 100.0, 5, 0.0, [0.05])
    feed_seconds(tb, 105.0, 1, -2.0, [0.05])          # the wall clock stepped on 2 s
    assert clock.contradictions == 0 and abs(clock.offset_s) <= clock.uncertainty_s
    feed_seconds(tb, 106.0, 3, -2.0, [0.05])
    assert clock.contradictions == 1 and clock.late == 0
    assert abs(clock.offset_s + 2.0) <= clock.uncertainty_s


def test_a_wall_clock_step_is_a_contradiction_and_the_old_sentences_go():
    clock = GpsClock(SETTINGS)
    tb = Timebase(SETTINGS, read_kernel=lambda: THIS_MACHINE)
    tb.gps = clock
    feed_seconds(tb, 100.0, 5, 0.0, [0.05])
    feed_seconds(tb, 105.0, 5, 2.0, [0.05])           # the wall clock stepped back 2 s
    assert clock.contradictions == 1
    assert abs(clock.offset_s - 2.0) <= clock.uncertainty_s


def test_zda_without_a_valid_rmc_and_rmc_status_v_are_not_used():
    clock = GpsClock(SETTINGS)
    assert not clock.feed(zda(T0, 100.0), WALL_MINUS_MONO)
    assert not clock.feed(rmc(T0, 100.05, valid=False), WALL_MINUS_MONO)
    assert not clock.feed(zda(T0, 100.07), WALL_MINUS_MONO)
    assert clock.last_t_mono_s is None and clock.invalid == 3
    assert clock.feed(rmc(T0 + timedelta(seconds=1), 101.05), WALL_MINUS_MONO)
    assert clock.feed(zda(T0 + timedelta(seconds=1), 101.07), WALL_MINUS_MONO)


def test_a_pps_edge_sets_the_offset_within_its_own_bound():
    settings = TimeSettings(gps_pps=True)
    clock = GpsClock(settings)
    clock.feed_pps(100.0002, WALL_MINUS_MONO + 0.5)      # the wall clock 0.5 s ahead
    second = T0
    clock.feed(rmc(second, 100.0002 + 0.11), WALL_MINUS_MONO + 0.5)
    assert clock.offset_s == pytest.approx(-0.5 - 0.0002, abs=1e-6)
    assert clock.uncertainty_s == pytest.approx(1e-3)
    ignored = GpsClock(SETTINGS)
    ignored.feed_pps(100.0, WALL_MINUS_MONO)
    ignored.feed(rmc(second, 100.11), WALL_MINUS_MONO)
    assert ignored.uncertainty_s == pytest.approx(0.1)


# Settings ------------------------------------------------------------------------------

def test_every_setting_gives_its_reason():
    for model in (TimeSettings, type(SETTINGS.fit)):
        for name, field in model.model_fields.items():
            if name != "fit":
                assert field.description and len(field.description) > 40, name


def test_a_latency_window_upside_down_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"gps_latency_min_ms \(300.0\) must be below"):
        validate(TimeSettings, {"gps_latency_min_ms": 300}, "edge.yaml", prefix="time")
    with pytest.raises(ConfigError, match=r"option 'time.holdover_drift_ppm' .*got 900"):
        validate(TimeSettings, {"holdover_drift_ppm": 900}, "edge.yaml", prefix="time")
