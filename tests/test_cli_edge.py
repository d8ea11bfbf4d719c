"""``zhichao edge probe`` against simulated devices speaking the real protocols."""

import json

import pytest

from drivers.modbus_map import load_register_map
from drivers.strips import StripArray
from sim.camera_twin import render_lane_video
from sim.modbus_twin import ModbusTwin
from sim.traffic import generate_traffic
from zhichao.cli import main
from zhichao.resources import config_dir

MAP = config_dir() / "devices" / "wim_modbus.example.yaml"


@pytest.fixture
def controller():
    """A Modbus WIM controller twin publishing simulated vehicles 20× faster than life."""
    with ModbusTwin(load_register_map(MAP)) as twin:
        url = twin.start()
        twin.feed(generate_traffic(StripArray(lanes=2), 60.0, seed=1), speedup=20.0)
        yield url


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
