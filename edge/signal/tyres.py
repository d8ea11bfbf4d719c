"""Which tyres an axle runs on, read from the strip signal.

At one inflation pressure a contact patch's length is the wheel load over (pressure ×
contact width), so the wheel load per patch length is pressure × width: about 200 kN/m
for a single tyre, 300 for a wide-base one and 380 for a dual assembly. The patch length
is the speed times the pulse's half-peak width, as long as the patch is longer than the
strip; a lighter wheel's patch is not resolved.

The reading decides a legal deduction (a single-tyred group or trailer axle lowers the
limit by 3 000 kg), so doubt goes to the party: the axles of one group are read together
(their median), and a light wheel that cannot be read counts as dual in any vehicle that
has a dual axle.
"""

import statistics

import numpy as np

from edge.signal.axles import G_MPS2
from edge.signal.settings import SignalSettings

KINDS = ("single", "wide_base", "dual")
RESOLVED_MARGIN = 1.15
"""A patch must be this many strip widths long before its length counts as measured."""


def load_per_length(load_kg: np.ndarray, contact_m: np.ndarray, strip_m: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wheel load per contact length (N/m) of each axle, and whether it was measured.

    A patch no longer than the strip gives only a lower bound, which still settles the
    reading when even that bound lies above the single-tyre range.
    """
    wheel_n = np.asarray(load_kg, float) * G_MPS2 / 2
    contact = np.asarray(contact_m, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_m = wheel_n / np.maximum(contact, strip_m)
    resolved = np.isfinite(per_m) & (contact > strip_m * RESOLVED_MARGIN)
    return per_m, resolved


def kind_of(per_m: np.ndarray, settings: SignalSettings) -> np.ndarray:
    """Index into :data:`KINDS` for each load per length."""
    return np.where(per_m <= settings.single_tyre_max_n_per_m, 0,
                    np.where(per_m <= settings.wide_base_max_n_per_m, 1, 2))


def _axle_kinds(per_m: np.ndarray, resolved: np.ndarray, settings: SignalSettings
                ) -> np.ndarray:
    """Index into :data:`KINDS` per axle, -1 where unknown.

    An unresolved patch gives only a lower bound of the load per length: above the
    single-tyre range it rules single out and the axle counts as dual (the law's
    default); below, nothing is known.
    """
    kind = kind_of(per_m, settings)
    return np.where(resolved, kind, np.where(kind > 0, 2, -1))


def axle_tyres(load_kg: np.ndarray, contact_m: np.ndarray, strip_m: float,
               settings: SignalSettings) -> tuple[str | None, ...]:
    """Each axle read on its own; None where it cannot be read."""
    per_m, resolved = load_per_length(load_kg, contact_m, strip_m)
    return tuple(KINDS[k] if k >= 0 else None
                 for k in _axle_kinds(per_m, resolved, settings))


def vehicle_tyres(load_kg: np.ndarray, contact_m: np.ndarray, spacings_m: np.ndarray, *,
                  group_threshold_m: float, strip_m: float, settings: SignalSettings,
                  readable: bool = True) -> tuple[str, ...]:
    """The tyres of one vehicle's axles, group by group.

    A group's measured axles are read together (the median load per length); a group
    with none measured takes what its unresolved axles rule out. Light wheels that
    cannot be read are dual on a truck (a vehicle with a dual axle, or whose front axle
    is heavier than ``light_vehicle_axle_max_kg``), single on a car. A vehicle whose
    wheels were not fully on the strips (``readable`` false) gets the law's default
    instead of a reading: single tyres on the steer axle, dual elsewhere.

    Examples
    --------
    >>> s = SignalSettings()
    >>> vehicle_tyres(np.array([6000, 9000, 9000]), np.array([0.29, 0.12, 0.13]),
    ...               np.array([4.0, 1.35]), group_threshold_m=1.9, strip_m=0.05, settings=s)
    ('single', 'dual', 'dual')
    """
    load_kg = np.asarray(load_kg, float)
    if not readable:
        return ("single",) + ("dual",) * (len(load_kg) - 1)
    per_m, resolved = load_per_length(load_kg, contact_m, strip_m)
    axle_kind = _axle_kinds(per_m, resolved, settings)
    groups = np.split(np.arange(len(per_m)),
                      np.flatnonzero(np.asarray(spacings_m) >= group_threshold_m) + 1)
    kind = np.full(len(per_m), -1)
    for g in groups:
        if resolved[g].any():
            kind[g] = kind_of(np.array([statistics.median(per_m[g][resolved[g]].tolist())]),
                              settings)[0]
        elif (axle_kind[g] >= 0).any():
            kind[g] = axle_kind[g].max()
    truck = (kind > 0).any() or load_kg[0] > settings.light_vehicle_axle_max_kg
    return tuple(KINDS[k if k >= 0 else (2 if truck else 0)] for k in kind)
