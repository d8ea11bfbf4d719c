"""benchmarks/signal.py runs and ends with one JSON object of finite figures (a smoke
test: speed is the benchmark's business, so no timing threshold here)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("samples_per_s", "x_realtime", "ratio_to_numpy_pass", "gvw_error_mean_pct",
        "gvw_error_std_pct", "speed_error_pct", "spacing_error_m", "wrong_axle_count_pct")


def test_the_benchmark_ends_with_its_figures_as_json():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "signal.py"), "--duration-s", "5",
         "--accuracy-s", "20", "--repeat", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert isinstance(figures[key], int | float), key
        assert math.isfinite(figures[key]), key
    assert figures["samples_per_s"] > 0 and figures["x_realtime"] > 0
    assert figures["ratio_to_numpy_pass"] > 0
    assert 0 <= figures["wrong_axle_count_pct"] <= 100
    assert figures["gvw_error_std_pct"] >= 0 and figures["spacing_error_m"] >= 0
    assert figures["vehicles"] > 0
    # the ideal run is scored too
    assert math.isfinite(figures["ideal_gvw_error_mean_pct"])
    assert abs(figures["ideal_gvw_error_mean_pct"]) < 0.5
