"""``edge run`` with a serial port that does not exist: the unit names the device and the
port a few seconds after start, and its closing summary lists it as never connected."""

import json
import subprocess
import sys
import time

from edge.settings import EdgeSettings
from edge.unit import NOT_CONNECTED_S, RoadsideUnit


def settings_with(port: str) -> EdgeSettings:
    return EdgeSettings.model_validate({
        "plates": {"workers": 0},
        "devices": {"wim": {"kind": "serial", "protocol": "wim_records", "port": port}}})


def test_a_device_that_never_connects_is_named_with_its_port(tmp_path, caplog):
    port = str(tmp_path / "ttyUSB9")
    unit = RoadsideUnit(settings_with(port), tmp_path)
    unit.start()
    deadline = time.monotonic() + NOT_CONNECTED_S + 2.0
    while time.monotonic() < deadline and not any("wim" in r.getMessage()
                                                 for r in caplog.records):
        unit.poll()
        time.sleep(0.05)
    counts = unit.stop()
    (record,) = [r for r in caplog.records if "not connected" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "wim" in record.getMessage() and port in record.getMessage()
    assert "No such file or directory" in record.getMessage()
    assert counts["never_connected"] == {"wim": port}


def test_edge_run_prints_the_missing_port(tmp_path):
    port = str(tmp_path / "ttyUSB9")
    config = tmp_path / "edge.yaml"
    config.write_text(json.dumps({"plates": {"workers": 0}, "devices": {"wim": {
        "kind": "serial", "protocol": "wim_records", "port": port}}}), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "zhichao.cli", "edge", "run", "--config",
                          str(config), "--seconds", str(NOT_CONNECTED_S + 1.5), "--json"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "not connected" in line]
    assert warned and "wim" in warned[0] and port in warned[0]
    summary = json.loads(run.stdout.splitlines()[-1])["summary"]
    assert summary["never_connected"] == {"wim": port}
    assert any("never connected" in line and port in line for line in run.stderr.splitlines())
