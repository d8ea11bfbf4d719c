"""Build the roadside weighing chain from settings: rule tables, axle coder, signal loop."""

import functools
from collections.abc import Sequence

import overload
from edge.settings import EdgeSettings
from edge.signal.loop import SignalLoop
from edge.signal.vehicles import AxleCoder


def axle_coder(rules: overload.RuleBook) -> AxleCoder:
    """The rule tables' axle-type coding, answering None where no code fits.

    A code depends on the spacings only through which axles form groups, so answers are
    remembered by grouping and tyres: a site sees the same few dozen vehicle kinds.
    """
    threshold = rules.group_threshold_m

    @functools.lru_cache(maxsize=1024)
    def by_groups(grouped: tuple[bool, ...], tyres: tuple[str, ...]) -> str | None:
        spacings = [threshold / 2 if g else threshold * 2 for g in grouped]
        try:
            return overload.axle_code_from_axles(spacings, tyres, rules)
        except overload.RuleError:
            return None

    def code(spacings_m: Sequence[float], tyres: Sequence[str]) -> str | None:
        if len(spacings_m) != len(tyres) - 1 or not all(s > 0 for s in spacings_m):
            return None
        return by_groups(tuple(s < threshold for s in spacings_m), tuple(tyres))

    return code


def load_rules_for(settings: EdgeSettings) -> overload.RuleBook:
    """The rule tables the settings name (shipped ones unless a folder is given)."""
    return overload.load_rules(settings.rules.folder, vendor=settings.rules.vendor)


def signal_loop(settings: EdgeSettings, rules: overload.RuleBook | None = None) -> SignalLoop:
    """A signal loop for the site described by ``settings``."""
    rules = rules or load_rules_for(settings)
    return SignalLoop(settings.site, axle_coder(rules), rules.group_threshold_m, settings.signal,
                      settings.calibration)
