"""``zhichao edge probe`` against simulated devices speaking the real protocols."""

import json
import subprocess
import sys

import pytest
import yaml
import zmq
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.db import make_engine, upgrade
from center.ingest import enrol_from_files
from center.ingest_models import StoredPacket
from center.receiver import Receiver
from center.settings import CenterSettings, ReceiverSettings
from drivers.modbus_map import load_register_map
from drivers.strips import StripArray
from edge.settings import load_edge_settings
from edge.timebase import Timebase
from evidence.keys import make_keys
from sim import serial_twins
from sim.camera_twin import render_lane_video
from sim.modbus_twin import ModbusTwin
from sim.serial_twins import DigitiserTwin, WimControllerTwin, XK3190Twin
from sim.traffic import generate_traffic
from zhichao.cli import main
from zhichao.resources import config_dir

MAP = config_dir() / "devices" / "wim_modbus.example.yaml"


@pytest.fixture
def controller():
    """A Modbus WIM controller twin publishing simulated vehicles 20× faster than life,
    for up to 30 s: the command may take seconds to start on a loaded machine, and the
    records published before it connects are not its to read."""
    with ModbusTwin(load_register_map(MAP)) as twin:
        url = twin.start()
        feeder = twin.feed(generate_traffic(StripArray(lanes=2), 600.0, seed=1),
                           speedup=20.0)
        yield url
        feeder.stop()


def json_lines(text: str) -> list[dict]:
    """Every stdout line parsed as JSON."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_probe_prints_one_json_object_per_record_then_the_counts(controller, capsys):
    status = main(["edge", "probe", "--modbus", controller, "--seconds", "2", "--json"])
    lines = json_lines(capsys.readouterr().out)
    records, counts = lines[:-1], lines[-1]
    assert status == 0
    assert len(records) >= 3
    assert counts["frames"] == len(records) and counts["bad_frames"] == 0
    for record in records:
        assert abs(sum(record["axle_loads_kg"]) - record["gvw_kg"]) <= 10 * len(
            record["axle_loads_kg"])
        assert len(record["spacings_m"]) == len(record["axle_loads_kg"]) - 1


def test_probe_of_an_unreachable_controller_says_so_and_fails(capsys):
    status = main(["edge", "probe", "--modbus", "tcp://127.0.0.1:1", "--seconds", "1",
                   "--json"])
    counts = json_lines(capsys.readouterr().out)[-1]
    assert status == 1
    assert counts["frames"] == 0
    assert any("could not reach the device" in hint for hint in counts["hints"])


def test_probe_without_a_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["edge", "probe", "--seconds", "1"])
    assert exit_.value.code == 2
    assert "--modbus" in capsys.readouterr().err


def test_probe_reads_a_camera_stream_frame_by_frame(tmp_path, capsys):
    traffic = generate_traffic(StripArray(lanes=1), 20.0, seed=2)
    video = render_lane_video(traffic, tmp_path / "lane.avi", duration_s=4.0)
    status = main(["edge", "probe", "--camera", str(video.path), "--seconds", "1.5",
                   "--json"])
    lines = json_lines(capsys.readouterr().out)
    frames, counts = lines[:-1], lines[-1]
    assert status == 0
    assert len(frames) >= 10 and counts["frames"] >= len(frames)
    assert [f["index"] for f in frames] == sorted(f["index"] for f in frames)
    assert all("shape" in f and "image" not in f for f in frames)


@pytest.fixture
def xk3190():
    """An XK3190 indicator twin on a pseudo-terminal, settling on 31 000 kg."""
    twin = XK3190Twin(speed=4.0)
    port = twin.start()
    twin.command(31_000.0)
    yield port
    twin.stop()


def test_probe_of_a_scale_reports_weight_and_when_it_is_stable(xk3190, capsys):
    status = main(["edge", "probe", "--serial", xk3190, "--protocol", "xk3190",
                   "--seconds", "2", "--json"])
    lines = json_lines(capsys.readouterr().out)
    readings, counts = lines[:-1], lines[-1]
    assert status == 0 and counts["bad_frames"] == 0
    assert {"weight_kg", "stable"} <= set(readings[0])
    assert readings[-1]["stable"] and readings[-1]["weight_kg"] == pytest.approx(31_000.0)


def test_probe_at_the_wrong_baud_rate_says_so(xk3190, capsys):
    status = main(["edge", "probe", "--serial", xk3190, "--protocol", "xk3190",
                   "--baud", "115200", "--seconds", "1.5", "--json"])
    counts = json_lines(capsys.readouterr().out)[-1]
    assert status == 1 and counts["frames"] == 0
    assert any("wrong baud rate" in hint for hint in counts["hints"])


def test_probe_of_a_configured_device(xk3190, tmp_path, capsys):
    settings = tmp_path / "edge.yaml"
    settings.write_text(yaml.safe_dump({"devices": {"scale": {
        "kind": "serial", "protocol": "xk3190", "port": xk3190, "baudrate": 9600}}}))
    status = main(["edge", "probe", "--config", str(settings), "--device", "scale",
                   "--seconds", "1", "--json"])
    assert status == 0
    assert json_lines(capsys.readouterr().out)[-1]["frames"] > 0
    assert main(["edge", "probe", "--config", str(settings), "--device", "scales",
                 "--seconds", "1"]) == 2
    assert "no device 'scales' under 'devices' (there are: scale)" in capsys.readouterr().err


def test_a_typo_in_a_device_section_stops_start_up(tmp_path, capsys):
    settings = tmp_path / "edge.yaml"
    settings.write_text(yaml.safe_dump({"devices": {"front": {
        "kind": "camera", "url": "usb:0", "ofset_s": 0.1}}}))
    assert main(["edge", "probe", "--config", str(settings), "--device", "front"]) == 2
    err = capsys.readouterr().err
    assert "ofset_s" in err and "devices.front" in err and "0.1" in err


def test_sim_starts_every_device_and_writes_settings_that_load(tmp_path):
    settings = tmp_path / "sim.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "zhichao.cli", "sim", "--seconds", "1", "--controllers",
         "--write-config", str(settings)], check=False, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    devices = load_edge_settings(settings).devices
    assert {s["kind"] for s in devices.values()} == {"serial", "modbus", "camera"}
    assert {s.get("protocol") for s in devices.values() if s["kind"] == "serial"} == {
        "digitiser", "wim_records", "xk3190", "toledo", "nmea"}
    cameras = {n: s for n, s in devices.items() if s["kind"] == "camera"}
    assert {(s["lane"], s["role"]) for s in cameras.values()} == {
        (1, "front"), (1, "rear"), (2, "front"), (2, "rear")}


def test_edge_run_weighs_from_a_digitiser_and_a_controller(tmp_path, capsys, monkeypatch):
    # the twins wait up to 2 s for a reader that stalls (a slow machine) before they drop
    # bytes as a line does; what is lost even so comes out flagged data_gap
    monkeypatch.setattr(serial_twins, "WRITE_TIMEOUT_S", 2.0)
    site = StripArray(lanes=2)
    traffic = generate_traffic(site, 40.0, seed=4)
    digitiser = DigitiserTwin(site, traffic, speed=4.0, render_seed=4)
    lines = WimControllerTwin(site, traffic, speed=4.0)
    settings = tmp_path / "edge.yaml"
    settings.write_text(yaml.safe_dump({"site": {"lanes": 2}, "devices": {
        "digitiser": {"kind": "serial", "protocol": "digitiser", "port": digitiser.start()},
        "controller": {"kind": "serial", "protocol": "wim_records", "port": lines.start()},
    }}))
    try:
        assert main(["edge", "run", "--config", str(settings), "--seconds", "8",
                     "--json"]) == 0
    finally:
        digitiser.stop()
        lines.stop()
    *vehicles, summary = json_lines(capsys.readouterr().out)
    assert summary["summary"]["weighed"] == len(vehicles)
    weighed = [v for v in vehicles if v["source"] == "signal" and "data_gap" not in v["flags"]]
    reported = {round(v["speed_mps"], 1): v for v in vehicles if v["source"] == "controller"}
    assert len(weighed) >= 5 and len(reported) >= 5
    assert {v["action"] for v in vehicles} <= {"none", "warning", "fine", "unknown"}
    same = [(v, reported[round(v["speed_mps"], 1)]) for v in weighed
            if round(v["speed_mps"], 1) in reported]
    assert len(same) >= 3  # the loop's speeds match the controller's to 0.1 m/s
    for ours, theirs in same:
        assert len(ours["axle_loads_kg"]) == len(theirs["axle_loads_kg"])
        assert ours["gross_kg"] == pytest.approx(theirs["gross_kg"], rel=0.15)


def test_edge_run_refuses_two_digitisers_for_one_signal_loop(tmp_path, capsys):
    settings = tmp_path / "edge.yaml"
    settings.write_text(yaml.safe_dump({"devices": {
        name: {"kind": "serial", "protocol": "digitiser", "port": "loop://"}
        for name in ("north", "south")}}))
    assert main(["edge", "run", "--config", str(settings), "--seconds", "1"]) == 2
    assert "devices north, south are all digitisers" in capsys.readouterr().err


def test_edge_run_sends_every_vehicle_to_the_center(tmp_path, capsys):
    """``edge run --send``: every vehicle weighed is committed to the outbox and reaches a
    real receiver over CURVE; overloads as suspected, the rest as light records."""
    make_keys(tmp_path / "keys", "center", curve_only=True)
    make_keys(tmp_path / "keys", "unit")
    with zmq.Context.instance().socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
    center = CenterSettings(
        database=str(tmp_path / "center.db"), images_dir=tmp_path / "images",
        receiver=ReceiverSettings(listen=[f"tcp://127.0.0.1:{port}"],
                                  server_secret_key=tmp_path / "keys" / "center.key_secret"))
    engine = make_engine(center.database)
    upgrade(engine)
    enrol_from_files(engine, "unit-1", tmp_path / "keys" / "unit.sign.pub",
                     tmp_path / "keys" / "unit.key")
    receiver = Receiver(center, engine)
    receiver.start()
    site = StripArray(lanes=2)
    digitiser = DigitiserTwin(site, generate_traffic(site, 40.0, seed=4), speed=4.0,
                              render_seed=4)
    settings = tmp_path / "edge.yaml"
    settings.write_text(yaml.safe_dump({
        "device_id": "unit-1", "site": {"lanes": 2},
        "evidence": {"site": "G60 K123+450", "direction": "east", "outbox": "outbox.db",
                     "signing_key": "keys/unit.sign", "curve_secret_key": "keys/unit.key_secret",
                     "center_public_key": "keys/center.key",
                     "endpoints": [f"tcp://127.0.0.1:{port}"]},
        "devices": {"digitiser": {"kind": "serial", "protocol": "digitiser",
                                  "port": digitiser.start()}}}))
    try:
        assert main(["edge", "run", "--config", str(settings), "--seconds", "8", "--json",
                     "--send"]) == 0
    finally:
        digitiser.stop()
        receiver.stop()
    lines = json_lines(capsys.readouterr().out)
    counts = lines[-1]["summary"]["evidence"]
    vehicles = lines[:-1]
    # no GPS here: the kernel's word alone (these machines' kernels are not synced, so
    # free-running, said so, with no bound)
    kernel = Timebase().state().status
    assert {v["clock_status"] for v in vehicles} == {kernel}
    assert all((v["clock_uncertainty_ms"] is None) == (kernel == "free_running")
               for v in vehicles)
    assert len(vehicles) >= 5
    assert [v["sequence"] for v in vehicles] == list(range(1, len(vehicles) + 1))
    assert counts["acked"] == len(vehicles) and counts["pending"] == 0
    with Session(engine) as session:
        stored = session.scalars(select(StoredPacket).order_by(StoredPacket.sequence)).all()
    engine.dispose()
    assert [p.sequence for p in stored] == [v["sequence"] for v in vehicles]
    over = [v["sequence"] for v in vehicles if v["limit_kg"] and v["gross_kg"] > v["limit_kg"]]
    assert [p.sequence for p in stored if p.suspected_overload] == over
    assert all(p.device_id == "unit-1" for p in stored)


def test_probe_of_an_unreachable_camera_gives_the_camera_s_own_hint(capsys):
    url = "rtsp://127.0.0.1:1/cam"
    status = main(["edge", "probe", "--camera", url, "--seconds", "1", "--json"])
    counts = json_lines(capsys.readouterr().out)[-1]
    assert status == 1 and counts["frames"] == 0
    assert counts["hints"][0].startswith(f"unreachable: {url}: cannot open")
