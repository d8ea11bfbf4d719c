"""The Modbus WIM driver against a real pymodbus server (the twin), over TCP on 127.0.0.1
and over RTU between two linked pseudo-terminals: simulated traffic in, the same vehicles
out, in order and once each; the cable pulled and plugged back; records the controller
overwrote before a poll counted as missed. Every wait is bounded."""

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.base import DeviceStatus
from drivers.modbus_map import RegisterMap, WimRecord, encode_record, load_register_map
from drivers.modbus_wim import (
    Endpoint,
    ModbusWimDevice,
    ModbusWimSettings,
    parse_url,
)
from drivers.strips import StripArray
from sim.modbus_twin import ModbusTwin, record_from_truth
from sim.traffic import VehicleTruth, generate_traffic
from zhichao.errors import ConfigError
from zhichao.resources import config_dir
from zhichao.settings import validate

EXAMPLE = config_dir() / "devices" / "wim_modbus.example.yaml"
EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
POLL_S = 0.02


def make_map(*, slots: int = 1, **top: Any) -> RegisterMap:
    data = copy.deepcopy(EXAMPLE_DATA)
    data["record"]["slots"] = slots
    data.update(top)
    return RegisterMap.model_validate(data)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def collect(device: ModbusWimDevice, n: int, timeout_s: float = 5.0) -> list[dict]:
    """Readings until ``n`` have come or ``timeout_s`` has passed."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        got += device.readings(timeout_s=min(0.2, max(0.0, deadline - time.monotonic())))
    return got


def record(sequence: int, loads: tuple[float, ...] = (6000.0, 9000.0)) -> WimRecord:
    return WimRecord(sequence=sequence, t_s=1.7e9 + sequence, lane=sequence % 3,
                     speed_mps=22.0, axle_loads_kg=loads,
                     spacings_m=tuple(3.0 for _ in loads[1:]), gvw_kg=sum(loads))


@pytest.fixture
def twins() -> Iterator[Callable[..., ModbusTwin]]:
    made: list[ModbusTwin] = []

    def make(reg_map: RegisterMap, **kwargs: Any) -> ModbusTwin:
        twin = ModbusTwin(reg_map, **kwargs)
        made.append(twin)
        twin.start()
        return twin

    yield make
    for twin in made:
        twin.close()


@pytest.fixture
def devices() -> Iterator[Callable[..., ModbusWimDevice]]:
    """Started drivers, connected to their twin (baseline counter read) before use."""
    made: list[ModbusWimDevice] = []

    def make(twin: ModbusTwin, **kwargs: Any) -> ModbusWimDevice:
        kwargs.setdefault("poll_interval_s", POLL_S)
        kwargs.setdefault("timeout_s", 0.3)
        device = ModbusWimDevice("wim-1", twin.url, twin.map, **kwargs)
        made.append(device)
        device.start()
        assert wait_for(lambda: device.get_status().connected), device.get_status()
        return device

    yield make
    for device in made:
        device.stop()


def traffic(duration_s: float, lanes: int = 2, seed: int = 7) -> list[VehicleTruth]:
    return generate_traffic(StripArray(lanes=lanes), duration_s, seed=seed)


def assert_same_vehicles(readings: list[dict], truths: list[VehicleTruth],
                         reg_map: RegisterMap) -> None:
    """Each reading is its truth within the map's resolution; in order, none twice."""
    assert [r["sequence"] for r in readings] == list(range(1, len(truths) + 1))
    assert [r["counter"] for r in readings] == [r["sequence"] for r in readings]
    half = {name: reg_map.resolution(name) / 2 + 1e-9 for name in
            ("speed", "axle_weight", "axle_spacing", "gross_weight")}
    for reading, truth in zip(readings, truths, strict=True):
        expected = record_from_truth(truth, sequence=reading["sequence"])
        assert reading["lane"] == truth.lane and reading["flags"] == expected.flags
        assert abs(reading["t_s"] - expected.t_s) <= 0.0005 + 1e-6
        assert abs(reading["speed_mps"] - truth.speed_mps) <= half["speed"]
        assert len(reading["axle_loads_kg"]) == truth.n_axles
        assert all(abs(a - b) <= half["axle_weight"]
                   for a, b in zip(reading["axle_loads_kg"], truth.axle_loads_kg, strict=True))
        assert all(abs(a - b) <= half["axle_spacing"]
                   for a, b in zip(reading["spacings_m"], truth.spacings_m, strict=True))
        assert abs(reading["gvw_kg"] - truth.gvw_kg) <= half["gross_weight"]
        assert reading["missed_before"] == 0 and reading["device"] == "wim-1"


# ---------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(("url", "expected"), [
    ("tcp://127.0.0.1:1502", Endpoint("tcp", host="127.0.0.1", port=1502)),
    ("tcp://wim.local", Endpoint("tcp", host="wim.local", port=502)),
    ("tcp://[::1]:5020", Endpoint("tcp", host="::1", port=5020)),
    ("rtu:///dev/ttyUSB0", Endpoint("rtu", path="/dev/ttyUSB0")),
    ("rtu:///dev/ttyS1?baud=19200&parity=E&bytesize=7&stopbits=2",
     Endpoint("rtu", path="/dev/ttyS1", baud=19200, parity="E", bytesize=7, stopbits=2)),
])
def test_urls(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize(("url", "says"), [
    ("udp://10.0.0.1", "scheme must be 'tcp' or 'rtu' (got 'udp')"),
    ("tcp://10.0.0.1:99999", "port must be 1..65535 (got '99999')"),
    ("tcp://:502", "must be tcp://HOST[:PORT]"),
    ("rtu://", "needs a serial device"),
    ("rtu:///dev/ttyS0?baud=fast", "'baud' must be a whole number above 0 (got 'fast')"),
    ("rtu:///dev/ttyS0?parity=X", "'parity' must be N or E or O (got 'X')"),
    ("rtu:///dev/ttyS0?speed=9600", "query option 'speed' is not known"),
])
def test_bad_urls_say_what_is_wrong(url, says):
    with pytest.raises(ConfigError) as info:
        parse_url(url)
    assert says in str(info.value) and repr(url) in str(info.value)


def test_settings_name_a_bad_url_and_build_the_driver(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"edge.yaml: option 'wim.url' .*'ftp'"):
        validate(ModbusWimSettings, {"url": "ftp://x", "register_map": "m.yaml"},
                 "edge.yaml", prefix="wim")
    (tmp_path / "map.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"))
    settings = validate(ModbusWimSettings, {"url": "tcp://127.0.0.1:1502",
                                            "register_map": "map.yaml"}, "edge.yaml")
    device = ModbusWimDevice.from_settings(settings, base_dir=tmp_path)
    assert device.map == load_register_map(EXAMPLE)
    assert (device.endpoint.port, device.poll_interval_s) == (1502, 0.1)


# ---------------------------------------------------------------------------- end to end


def test_tcp_end_to_end_every_vehicle_once_in_order(twins, devices):
    reg_map = make_map(slots=8)
    twin = twins(reg_map)
    assert twin.url.startswith("tcp://127.0.0.1:") and twin.port > 0
    device = devices(twin)
    # about 5 vehicles a second into 8 slots: a poll may stall 1.5 s and miss nothing
    truths = traffic(60.0)
    feeder = twin.feed(truths, speedup=20.0)
    assert feeder.join(10.0)
    readings = collect(device, len(truths))
    assert_same_vehicles(readings, truths, reg_map)
    status = device.get_status()
    assert (status.frames, status.bad_frames, status.extra["missed_records"]) == (
        len(truths), 0, 0)
    assert status.extra["duplicates"] == 0 and status.last_error is None
    assert wait_for(lambda: twin.memory.acks[-1:] == [len(truths)])
    assert twin.memory.acks == sorted(set(twin.memory.acks))
    assert device.readings() == []


def test_rtu_over_a_pty_end_to_end(twins, devices):
    reg_map = make_map(slots=4, word_order="little")
    twin = twins(reg_map, transport="rtu")
    assert twin.url.startswith("rtu:///") and "baud=115200" in twin.url
    device = devices(twin)
    truths = traffic(60.0, lanes=1, seed=3)
    assert twin.feed(truths, speedup=15.0).join(10.0)  # about 1.5 a second into 4 slots
    assert_same_vehicles(collect(device, len(truths)), truths, reg_map)
    assert device.get_status().extra["missed_records"] == 0


def test_input_registers_little_words_and_a_constant_ack(twins, devices):
    data = copy.deepcopy(EXAMPLE_DATA)
    data.update(table="input", address_base=30001, word_order="little", byte_order="little",
                max_registers_per_read=7)
    data["counter"]["address"] = 30001
    data["record"]["address"] = 30101
    data["ack"] = {"address": 40011, "type": "u32", "value": 1}
    reg_map = RegisterMap.model_validate(data)
    twin = twins(reg_map)
    device = devices(twin)
    twin.memory.publish([record(1, (7000.0, 11000.0, 11000.0))])
    (reading,) = collect(device, 1)
    assert reading["axle_loads_kg"] == [7000.0, 11000.0, 11000.0]
    assert wait_for(lambda: twin.memory.acks == [1])
    assert twin.memory.registers[10:12] == [0x0100, 0]  # u32 1 as DCBA: low word first,
    #                                                     its bytes swapped


# ---------------------------------------------------------------------------- faults


def test_unplug_and_plug_back(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    port = twin.port
    twin.memory.publish([record(1)])
    assert [r["sequence"] for r in collect(device, 1)] == [1]

    twin.stop()
    assert wait_for(lambda: not device.get_status().connected)
    down = device.get_status()
    assert down.last_error is not None and "wim-1" in down.last_error
    twin.memory.publish([record(2), record(3)])  # weighed while the cable was out

    assert twin.start() == f"tcp://127.0.0.1:{port}"
    assert wait_for(lambda: device.get_status().connected, timeout_s=8.0)
    (late,) = collect(device, 1)
    assert (late["sequence"], late["missed_before"]) == (3, 1)
    twin.memory.publish([record(4)])
    assert [r["sequence"] for r in collect(device, 1)] == [4]
    status = device.get_status()
    assert status.reconnects >= 1 and status.frames == 3
    assert status.extra["missed_records"] == 1


def test_a_counter_jump_counts_the_records_missed(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    twin.memory.publish([record(1)])
    assert len(collect(device, 1)) == 1
    twin.memory.publish([record(n) for n in range(2, 7)])  # five between two polls
    (last,) = collect(device, 1)
    assert (last["sequence"], last["counter"], last["missed_before"]) == (6, 6, 4)
    assert device.get_status().extra["missed_records"] == 4
    assert device.readings(timeout_s=5 * POLL_S) == []


def test_a_ring_of_slots_gives_back_what_it_still_holds(twins, devices):
    twin = twins(make_map(slots=4))
    device = devices(twin)
    twin.memory.publish([record(n) for n in range(1, 7)])
    readings = collect(device, 4)
    assert [r["sequence"] for r in readings] == [3, 4, 5, 6]
    assert [r["missed_before"] for r in readings] == [2, 0, 0, 0]
    assert device.get_status().extra["missed_records"] == 2


def test_a_slot_taken_by_a_newer_record_while_the_poll_reads_is_missed_not_taken(
        twins, devices):
    """The controller weighs four more vehicles while a poll is reading the blocks of
    four (the driver stalled): the blocks read may hold the newer records, under the
    older counters. They are counted as missed, and each vehicle comes once, under its
    own counter."""
    twin = twins(make_map(slots=4))
    device = devices(twin)
    read_block = device._read_block

    def read_while_the_controller_goes_on(client, counter):
        if counter == 2 and twin.memory.counter == 4:
            twin.memory.publish([record(n) for n in range(5, 9)])
        return read_block(client, counter)

    device._read_block = read_while_the_controller_goes_on
    twin.memory.publish([record(n) for n in range(1, 5)])
    readings = collect(device, 4)
    assert [(r["sequence"], r["counter"]) for r in readings] == [(5, 5), (6, 6), (7, 7),
                                                                 (8, 8)]
    assert readings[0]["missed_before"] == 4
    assert device.readings(timeout_s=5 * POLL_S) == []
    assert device.get_status().extra["missed_records"] == 4


def test_a_ring_across_the_counter_wrap(twins, devices):
    data = copy.deepcopy(EXAMPLE_DATA)
    data["counter"]["type"] = "u16"
    data["record"]["slots"] = 4
    twin = twins(RegisterMap.model_validate(data))
    twin.memory.set_counter(65533)
    device = devices(twin)
    twin.memory.publish([record(n) for n in range(1, 5)])  # counters 65534 .. 1
    readings = collect(device, 4)
    assert [r["counter"] for r in readings] == [65534, 65535, 0, 1]
    assert [r["sequence"] for r in readings] == [1, 2, 3, 4]


def test_a_bad_block_is_counted_and_the_next_one_read(twins, devices):
    reg_map = make_map()
    twin = twins(reg_map)
    device = devices(twin)
    broken = encode_record(reg_map, record(1))
    broken[7] = 0  # no axles
    twin.memory.registers[100:132] = broken
    twin.memory.set_counter(1)
    assert wait_for(lambda: device.get_status().bad_frames == 1)
    assert "axle count must be 1..10 (got 0)" in device.get_status().last_error
    twin.memory.publish([record(2)])
    assert [r["sequence"] for r in collect(device, 1)] == [2]
    assert device.get_status().frames == 1


def test_a_record_read_twice_is_dropped(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    twin.memory.publish([record(1)])
    assert len(collect(device, 1)) == 1
    twin.memory.set_counter(2)  # counter moved, block still the old record
    assert wait_for(lambda: device.get_status().extra["duplicates"] == 1)
    assert device.readings() == [] and device.get_status().frames == 1


def test_a_controller_restart_counts_from_zero(twins, devices):
    twin = twins(make_map())
    twin.memory.set_counter(500)
    device = devices(twin)
    twin.memory.set_counter(0)
    twin.memory.publish([record(1)])
    (reading,) = collect(device, 1)
    assert reading["counter"] == 1
    assert device.get_status().extra["counter_resets"] == 1


def test_nobody_there_reconnects_with_a_doubling_delay_and_stops_quickly(twins):
    twin = twins(make_map())
    twin.stop()
    device = ModbusWimDevice("wim-1", twin.url, twin.map, poll_interval_s=POLL_S,
                             timeout_s=0.3)
    device.start()
    try:
        assert wait_for(lambda: device.get_status().last_error is not None)
        time.sleep(0.5)
        status = device.get_status()
        assert not status.connected and "cannot connect" in status.last_error
        assert status.reconnects == 0
    finally:
        t0 = time.monotonic()
        device.stop()
        assert time.monotonic() - t0 < 1.5


def test_stop_returns_quickly_while_a_serial_device_is_silent(twins, devices):
    twin = twins(make_map(), transport="rtu")
    device = devices(twin)
    twin.stop()  # the line stays, nobody answers: every read times out
    assert wait_for(lambda: not device.get_status().connected)
    assert "no answer" in device.get_status().last_error
    t0 = time.monotonic()
    device.stop()
    assert time.monotonic() - t0 < 1.5


def test_status_is_a_plain_copy(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    status = device.get_status()
    assert isinstance(status, DeviceStatus) and status.as_dict()["extra"]["url"] == twin.url
    status.extra["missed_records"] = 99
    assert device.get_status().extra["missed_records"] == 0


@pytest.mark.slow
def test_a_long_busy_stream_over_tcp(twins, devices):
    reg_map = make_map(slots=16)
    twin = twins(reg_map)
    device = devices(twin)
    truths = traffic(1800.0, lanes=4, seed=11)
    assert twin.feed(truths, speedup=200.0).join(60.0)
    assert_same_vehicles(collect(device, len(truths), timeout_s=20.0), truths, reg_map)


def test_a_stopped_driver_starts_again_with_fresh_counts(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    twin.memory.publish([record(1)])
    assert len(collect(device, 1)) == 1
    device.stop()
    assert not device.get_status().connected
    twin.memory.publish([record(2)])  # before the restart: the baseline, not taken
    device.start()
    assert wait_for(lambda: device.get_status().connected)
    twin.memory.publish([record(3)])
    assert [r["sequence"] for r in collect(device, 1)] == [3]
    status = device.get_status()
    assert (status.frames, status.reconnects, status.extra["missed_records"]) == (1, 0, 0)


# ---------------------------------------------------------------------------- hints


def test_diagnose_a_healthy_controller_then_one_that_loses_records(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    twin.memory.publish([record(1)])
    assert len(collect(device, 1)) == 1
    assert device.diagnose(device.get_status(), 2.0) == [
        "ok: 1 records in 2 s, no problem seen"]
    twin.memory.publish([record(n) for n in range(2, 7)])  # five between two polls
    assert len(collect(device, 1)) == 1
    (hint,) = device.diagnose(device.get_status(), 3.0)
    assert hint.startswith("4 record(s) were overwritten") and "poll_interval_s" in hint


def test_diagnose_an_unreachable_then_a_returning_controller(twins, devices):
    twin = twins(make_map())
    device = devices(twin)
    twin.stop()
    assert wait_for(lambda: not device.get_status().connected)
    hints = device.diagnose(device.get_status(), 1.0)
    assert hints[0].startswith("could not reach the device: wim-1: ")
    twin.start()
    assert wait_for(lambda: device.get_status().connected, timeout_s=8.0)
    hints = device.diagnose(device.get_status(), 5.0)
    assert any(h.startswith("the connection dropped and came back 1 time(s)") for h in hints)


def test_diagnose_a_bad_register_map(twins, devices):
    reg_map = make_map()
    twin = twins(reg_map)
    device = devices(twin)
    broken = encode_record(reg_map, record(1))
    broken[7] = 0  # no axles: the map does not fit what the controller writes
    twin.memory.registers[100:132] = broken
    twin.memory.set_counter(1)
    assert wait_for(lambda: device.get_status().bad_frames == 1)
    hints = device.diagnose(device.get_status(), 1.0)
    assert any("failed to decode: check the register map" in h for h in hints)
