"""The web benchmark, run in-process on a tiny center (it runs on 100 000 cases): the
center it builds has the cases asked for, and every page it times answers."""

import os

import pytest

from benchmarks import web as bench


@pytest.mark.timeout(120)
def test_the_web_benchmark_builds_its_center_and_times_every_page(capsys):
    server = os.environ.get("ZHICHAO_TEST_PG")
    if not server:
        pytest.skip("ZHICHAO_TEST_PG is not set: the web benchmark needs PostgreSQL")
    assert bench.main(["--cases", "200", "--devices", "20", "--requests", "3", "--pg",
                       server, "--json"]) == 0
    figures = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"cases": 200' in figures and '"case_p95_ms"' in figures


def test_the_percentile_is_the_nearest_rank():
    assert bench.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert bench.percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
