"""Run the Examples of the law layer's docstrings (pytest collects only tests/)."""

import doctest
import importlib
import pkgutil

import pytest

import overload

MODULES = sorted(m.name for m in pkgutil.iter_modules(overload.__path__, "overload."))
WITH_EXAMPLES = {
    "overload",
    "overload.axles",
    "overload.calendar",
    "overload.codes",
    "overload.dimensions",
    "overload.grading",
    "overload.limits",
    "overload.procedure",
    "overload.plates",
    "overload.rulebook",
    "overload.tolerance",
}


@pytest.mark.parametrize("name", ["overload", *MODULES])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert (result.attempted > 0) == (name in WITH_EXAMPLES)
