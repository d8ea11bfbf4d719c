"""Build the roadside weighing chain from settings: rule tables, axle coder, calibration
chain, signal loop."""

import functools
from collections.abc import Sequence
from pathlib import Path

import overload
from calibration.chain import Chain, load_chain
from edge.settings import EdgeSettings
from edge.signal.loop import SignalLoop
from edge.signal.vehicles import AxleCoder
from zhichao.errors import ConfigError


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


def unit_chain(settings: EdgeSettings, base_dir: Path | None = None) -> Chain:
    """The calibration chain the unit weighs with: its ``calibration_file``; else a chain
    made of the plain ``calibration`` factors; else no correction (``factory``).

    A chain written for another unit, or for another number of channels or lanes, is a
    :class:`~zhichao.errors.ConfigError` naming the file: weighing with it would be wrong.
    """
    version = settings.evidence.calibration_version
    if settings.calibration_file is None:
        if settings.calibration is not None:
            return Chain.from_factors(settings.device_id, settings.calibration, version)
        return Chain.identity(settings.device_id, version)
    path = settings.calibration_file
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    chain = load_chain(path)
    if chain.device_id != settings.device_id:
        raise ConfigError(f"calibration file {path}: it is for unit {chain.device_id!r}, "
                          f"this unit is {settings.device_id!r}")
    chain.check_site(settings.site.n_channels, settings.site.lanes,
                     where=f"calibration file {path}")
    return chain


def signal_loop(settings: EdgeSettings, rules: overload.RuleBook | None = None,
                chain: Chain | None = None) -> SignalLoop:
    """A signal loop for the site described by ``settings``, weighing with ``chain``
    (default: :func:`unit_chain` without a base folder)."""
    rules = rules or load_rules_for(settings)
    return SignalLoop(settings.site, axle_coder(rules), rules.group_threshold_m, settings.signal,
                      chain or unit_chain(settings))
