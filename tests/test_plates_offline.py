"""Nothing is downloaded at run time: ``zhichao plate read`` on both engines, in a process
with no network at all and an empty home directory, reads the plates and writes no file
there (no model cache fetched, no telemetry kept)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plates import ENGINES

DATA = Path(__file__).parent / "data" / "plates"
IMAGES = [DATA / "crops" / "川X90621.jpg", DATA / "scenes" / "京H99999.jpg"]


def _without_network() -> list[str]:
    """A command prefix that runs a process in a new network namespace (no interface up,
    not even loopback), or an empty prefix if this machine does not allow one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], check=False,
                                  capture_output=True, timeout=30).returncode == 0:
        return [unshare, "--net"]
    return []


@pytest.mark.parametrize("engine", ENGINES)
def test_plates_are_read_with_no_network_and_an_empty_home(tmp_path, engine):
    home = tmp_path / "home"
    home.mkdir()
    prefix = _without_network()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env |= {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
            "PADDLE_HOME": str(home / ".paddle"), "PYTHONDONTWRITEBYTECODE": "1"}
    if not prefix:
        # No network namespace here: every proxy points at a closed port instead, so any
        # download through urllib or requests fails at once.
        env |= {name: "http://127.0.0.1:9" for name in
                ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")}
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "zhichao.cli", "plate", "read", "--json",
         "--engine", engine, *map(str, IMAGES)],
        check=False, capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["plates"][0]["text"] for line in lines] == ["川X90621", "京H99999"]
    # paddle makes an empty ~/.cache/paddle/dataset when imported; no file may appear
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()) == []
