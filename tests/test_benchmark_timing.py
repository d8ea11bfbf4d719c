"""The benchmarks' shared timing helper (benchmarks/ is left out of the doctest run)."""

import doctest

from benchmarks import timing


def test_timing_doctests_pass():
    result = doctest.testmod(timing)
    assert result.attempted > 0 and result.failed == 0
