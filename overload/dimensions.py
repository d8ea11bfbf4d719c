"""Dimension limits (height, width, length) and the dimension fine range of a benchmark.

Limits are in ``limits.yaml``; the fine bands (Order 62 Art. 43(一)) in the benchmark. The
worst dimension picks the band: a vehicle is in a band only when every measured dimension
is within the band's upper ends.
"""

import math

from overload.applied import AppliedRule, fmt_num
from overload.errors import RuleError
from overload.results import DimensionCheck
from overload.rulebook import RuleBook
from overload.tables import Benchmark, DimensionBand


def check_dimensions(
    rules: RuleBook,
    *,
    height_m: float | None = None,
    width_m: float | None = None,
    length_m: float | None = None,
) -> tuple[DimensionCheck, ...]:
    """Check the measured dimensions (only those given) against their limits.

    Examples
    --------
    >>> from overload import load_rules
    >>> [c.over for c in check_dimensions(load_rules(), height_m=4.3, width_m=2.5)]
    [True, False]
    """
    measured = {"height": height_m, "width": width_m, "length": length_m}
    checks = []
    for row in rules.limits.dimensions:
        value = measured[row.quantity]
        if value is None:
            continue
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise RuleError(f"{row.quantity} must be a number of metres above 0 (got {value!r})")
        checks.append(DimensionCheck(row.quantity, float(value), row.limit_m,
                                     value > row.limit_m, row.id))
    return tuple(checks)


def dimension_band(
    checks: tuple[DimensionCheck, ...], bench: Benchmark, rules: RuleBook
) -> DimensionBand | None:
    """The benchmark's dimension band for these checks; None when no dimension is over."""
    if not any(c.over for c in checks):
        return None
    scale = bench.dimensions
    if scale is None and bench.dimensions_from is not None:
        scale = rules.benchmark(bench.dimensions_from.benchmark).dimensions
    if scale is None:
        raise RuleError(f"benchmark {bench.id!r} has no dimension scale")
    for band in scale.bands:
        ends = band.up_to.model_dump() if band.up_to else {}
        if all(c.measured_m <= ends.get(f"{c.quantity}_m", math.inf) for c in checks):
            return band
    raise RuleError(f"benchmark {bench.id!r}: no dimension band holds the measured dimensions")


def dimension_rules(
    checks: tuple[DimensionCheck, ...], band: DimensionBand, rules: RuleBook,
    bench: Benchmark | None = None,
) -> list[AppliedRule]:
    """Cite each exceeded limit, the borrowed scale's legal path when there is one, the band."""
    cited = [
        AppliedRule.of(rules.rules[c.rule_id],
                       f"{c.quantity} {fmt_num(c.measured_m)} m > {fmt_num(c.limit_m)} m")
        for c in checks if c.over
    ]
    if bench is not None and bench.dimensions_from is not None:
        link = bench.dimensions_from
        via = f" via {link.via.cite()}" if link.via is not None else ""
        cited.append(AppliedRule.of(link, f"dimensions graded by the {link.benchmark!r} "
                                          f"scale under {link.source.cite()}{via}"))
    cited.append(AppliedRule.of(band, (
        f"dimension fine {fmt_num(band.fine_min_yuan)}–{fmt_num(band.fine_max_yuan)} yuan")))
    return cited
