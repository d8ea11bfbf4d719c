"""Measurement tolerance: the part of a measured mass that is not graded.

The policies are in ``config/rules/tolerance.yaml``: none, a percentage of the limit, or
the device's in-service maximum permissible error by accuracy class. A vehicle is over iff
``measured − tolerance > limit``.
"""

import numpy as np

from overload.errors import RuleError
from overload.tables import TolerancePolicy

PERCENT = 100.0  # percent → fraction; not a legal number


def class_key(accuracy_class: float | str) -> str:
    """Normalise an accuracy class to the table's key: 5 → '5', '0.50' → '0.5'."""
    try:
        return f"{float(accuracy_class):g}"
    except (TypeError, ValueError):
        raise RuleError(f"accuracy class must be a number (got {accuracy_class!r})") from None


def tolerance_kg(
    policy: TolerancePolicy,
    accuracy_class: float | str | None,
    measured_kg: np.ndarray,
    limit_kg: np.ndarray,
) -> np.ndarray:
    """Tolerance per vehicle, kg.

    Parameters
    ----------
    policy : TolerancePolicy
    accuracy_class : float or str or None
        The device's accuracy class; required by ``mpe`` policies.
    measured_kg, limit_kg : ndarray, shape (n,)

    Returns
    -------
    ndarray, shape (n,)

    Examples
    --------
    >>> from overload import load_rules
    >>> rules = load_rules()
    >>> tolerance_kg(rules.tolerance_policy("mpe"), 5, np.array([50000.0]), np.array([49000.0]))
    array([2500.])
    """
    if policy.kind == "none":
        return np.zeros_like(measured_kg)
    if policy.kind == "percent":
        return limit_kg * (policy.percent_of_limit / PERCENT)
    table = {class_key(k): v for k, v in (policy.mpe_percent_of_measured or {}).items()}
    known = ", ".join(table)
    if accuracy_class is None:
        raise RuleError(f"tolerance policy {policy.id!r} needs an accuracy class (known: {known})")
    key = class_key(accuracy_class)
    if key not in table:
        raise RuleError(
            f"tolerance policy {policy.id!r} has no accuracy class {key!r} (known: {known})"
        )
    return measured_kg * (table[key] / PERCENT)
