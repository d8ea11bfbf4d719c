"""The overload screen at the roadside: one vehicle against the rule tables.

The unit screens every vehicle to decide which passes are suspected overloads (those
carry images and go to the center as evidence); the center grades again with the law in
force. One implementation, used by the unit for ``zhichao edge run`` and the demo alike.
"""

import math
from collections.abc import Mapping
from typing import Any

import overload


def screen(vehicle: Mapping[str, Any], rules: overload.RuleBook) -> dict[str, Any]:
    """Gross, axle code, limit, action and fine of one vehicle (``axle_loads_kg``,
    ``spacings_m``, optional ``tyres`` and ``axle_code``); the law's default tyres when
    the source did not read them, and action ``unknown`` when no axle code fits or an
    axle was not weighed (its load not a number).

    >>> from edge.weighing import load_rules_for
    >>> from edge.settings import EdgeSettings
    >>> rules = load_rules_for(EdgeSettings())
    >>> s = screen({"axle_loads_kg": [7000, 11000, 11000], "spacings_m": [3.5, 1.35]}, rules)
    >>> s["axle_code"], s["gross_kg"], s["limit_kg"] is not None
    ('15', 29000.0, True)
    """
    loads = list(vehicle["axle_loads_kg"])
    tyres = list(vehicle.get("tyres") or ["single"] + ["dual"] * (len(loads) - 1))
    if not loads or not all(math.isfinite(x) and x >= 0 for x in loads):
        # an axle not weighed (samples lost under it): nothing to grade, and the pass's
        # own flag (data_gap, missing_axle) tells the center why
        return {"axle_code": vehicle.get("axle_code") or None, "gross_kg": None,
                "limit_kg": None, "action": "unknown", "fine_yuan": None, "tyres": tyres}
    code = vehicle.get("axle_code")
    if not code or code == "?":
        try:
            code = overload.axle_code_from_axles(vehicle.get("spacings_m", []), tyres, rules)
        except overload.RuleError:
            code = None
    gross = float(sum(loads))
    if not code:
        return {"axle_code": None, "gross_kg": gross, "limit_kg": None, "action": "unknown",
                "fine_yuan": None, "tyres": tyres}
    grade = overload.grade(code, gross, rules, tyres=tyres)
    return {"axle_code": code, "gross_kg": gross, "limit_kg": grade.limit_kg,
            "action": grade.action, "fine_yuan": grade.fine_yuan, "tyres": tyres}


def finite_or_zero(values: list[float]) -> list[float]:
    """Loads or spacings fit for a packet: an axle not weighed (NaN) is written as 0; the
    pass carries the flag that says why, so it is never taken as a measurement."""
    return [x if math.isfinite(x) else 0.0 for x in values]
