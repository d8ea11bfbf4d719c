"""Run the Examples of the roadside and simulator docstrings (pytest collects only
tests/, so these would otherwise never run)."""

import doctest
import importlib
import pkgutil

import pytest

import drivers
import edge
import edge.signal
import plates
import sim

MODULES = sorted(
    m.name
    for pkg, prefix in ((drivers, "drivers."), (edge, "edge."), (edge.signal, "edge.signal."),
                        (plates, "plates."), (sim, "sim."))
    for m in pkgutil.iter_modules(pkg.__path__, prefix)
    if not m.ispkg
)
WITH_EXAMPLES = {"drivers.strips", "sim.traffic", "edge.signal.pulses", "edge.signal.loop",
                 "edge.signal.tyres", "plates.colour"}


def test_the_modules_with_examples_are_found():
    assert set(MODULES) >= WITH_EXAMPLES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in WITH_EXAMPLES:
        assert result.attempted > 0
