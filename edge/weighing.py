"""Build the roadside weighing chain from settings: rule tables, axle coder, signal loop."""

from collections.abc import Sequence

import overload
from edge.settings import EdgeSettings
from edge.signal.loop import SignalLoop
from edge.signal.vehicles import AxleCoder


def axle_coder(rules: overload.RuleBook) -> AxleCoder:
    """The rule tables' axle-type coding, answering None where no code fits."""

    def code(spacings_m: Sequence[float], tyres: Sequence[str]) -> str | None:
        try:
            return overload.axle_code_from_axles(spacings_m, tyres, rules)
        except overload.RuleError:
            return None

    return code


def load_rules_for(settings: EdgeSettings) -> overload.RuleBook:
    """The rule tables the settings name (shipped ones unless a folder is given)."""
    return overload.load_rules(settings.rules.folder, vendor=settings.rules.vendor)


def signal_loop(settings: EdgeSettings, rules: overload.RuleBook | None = None) -> SignalLoop:
    """A signal loop for the site described by ``settings``."""
    rules = rules or load_rules_for(settings)
    return SignalLoop(settings.site, axle_coder(rules), rules.group_threshold_m, settings.signal,
                      settings.calibration)
