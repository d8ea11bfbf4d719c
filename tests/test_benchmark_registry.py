"""The registry benchmark's steps, run in-process on a few hundred devices (the benchmark
runs each in a child of its own, on 50 000)."""

from benchmarks import registry as bench
from center.registry import read_registry


def test_the_benchmark_registry_reads_and_each_step_runs(tmp_path):
    file = tmp_path / "devices.csv"
    bench.write_registry(file, 300)
    devices = read_registry(file)
    assert len(devices) == 300 and len(devices[0].suspensions) == 1
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    for step in ("setup", "import", "import", "page", "all", "baseline"):
        assert bench.child(step, url, file, page_rows=100) >= 0
