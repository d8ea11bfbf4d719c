"""The fit benchmark's steps on a small day of traffic: its sets of runs differ, its
pooled fit uses them all, and its summary is of the rows it was given."""

import pytest

from benchmarks import calibration_fit as bench

pytestmark = pytest.mark.timeout(120)


def test_each_set_is_a_calibration_of_its_own_and_the_pooled_fit_uses_them_all():
    rows = bench.seed_figures(3, sets=2, per_lane=60)
    assert [r["set"] for r in rows] == ["0", "1", "pooled"]
    assert [r["runs"] for r in rows] == [40, 40, 80]  # 2 trucks x 10 runs x 2 lanes
    assert rows[0]["mean"] != rows[1]["mean"]  # each set bounces its own way
    assert all(abs(r["mean"]) < 2.0 and r["std"] > 0 for r in rows), rows
    figures = bench.summary(rows)
    assert figures["one set"]["calibrations"] == 2
    assert figures["pooled sets"]["calibrations"] == 1
    lo, hi = figures["one set"]["mean left, range (%)"]
    assert lo == round(min(rows[0]["mean"], rows[1]["mean"]), 2)
    assert hi == round(max(rows[0]["mean"], rows[1]["mean"]), 2)


def test_seeds_are_read_as_ranges_and_lists_and_bad_ones_refused():
    assert bench._seeds("54-57,3") == [54, 55, 56, 57, 3]
    for bad in ("", "a-b", "-3", "1-1000"):
        with pytest.raises(ValueError):
            bench._seeds(bad)
