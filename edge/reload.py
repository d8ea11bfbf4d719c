"""Reload of a running roadside unit (SIGHUP, ``systemctl reload``): the settings file and
the rule tables read again, what may change live applied, the rest named for a restart.

A unit weighs for months; a technician who changes a wait or the rule tables should not
have to stop it, since a stop ends the vehicles on the strips and a restart loses the
signal loop's baseline and the clock fit. So :func:`reload_unit` reads and validates the
whole new file and the rule tables first; anything wrong (a typo, a value out of range, a
broken table) is an error naming the file, section and option, logged, and the unit goes
on with its old settings. Only when all of it is valid is anything changed, between two
rounds of the unit's loop, never inside one: the signal loop, the vehicles waiting for
frames or plates, the outbox and the sender are the same objects afterwards, so no packet
is lost and the sequence numbers go on.

What changes live (:data:`LIVE`) is what the unit reads at the moment it uses it: the rule
tables (screening, axle coding, the packets' rules digest), the waits of a pass, the plate
queue's policy, the packets' site and direction, and the outbox's retention. The rest
needs a restart, each option then logged as ``needs a restart: <option>`` and kept at its
old value: the devices and the strips they are wired to (ports, lanes, channels), the
signal loop's tuning (its state was built with it), the clock, the calibration, the keys
and identity, the sender's endpoints and timing (its connection is built with them), the
plate readers' own processes, and the metrics page's port.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import overload
from edge.settings import EdgeSettings, load_edge_settings
from edge.weighing import axle_coder, load_rules_for
from zhichao.errors import ConfigError, ZhichaoError

if TYPE_CHECKING:  # the unit imports this module
    from edge.unit import RoadsideUnit

log = logging.getLogger(__name__)

LIVE: dict[str | None, frozenset[str]] = {
    "rules": frozenset({"folder", "vendor"}),
    "evidence": frozenset({"site", "direction", "keep_days", "keep_light_days",
                           "hold_max"}),
    "unit": frozenset({"frame_wait_s", "record_delay_s", "unfitted_uncertainty_s"}),
    "plates": frozenset({"wait_s", "frames", "read_light", "queue"}),
    None: frozenset({"pavement_temperature_c"}),
}
"""Options applied by a reload, by section (None: top-level options). Every other option
of :class:`~edge.settings.EdgeSettings` needs a restart."""


@dataclass
class Reloaded:
    """What one reload did: the options applied, those that need a restart, the rule
    tables' digest before and after, or the error that refused the new file."""

    applied: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    rules_digest: tuple[str, str] = ("", "")
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def changed_options(old: EdgeSettings, new: EdgeSettings) -> list[str]:
    """Dotted names of the options whose values differ (``unit.frame_wait_s``,
    ``devices.front.url``); a list (``evidence.endpoints``) counts as one option.

    >>> old = EdgeSettings()
    >>> new = EdgeSettings(unit={"frame_wait_s": 3.0}, evidence={"site": "G60"})
    >>> changed_options(old, new)
    ['evidence.site', 'unit.frame_wait_s']
    """
    return sorted(_diff(old.model_dump(mode="json"), new.model_dump(mode="json"), ""))


def _diff(a: Any, b: Any, where: str) -> list[str]:
    """Paths below ``where`` at which two plain values differ (dicts recursed)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out += _diff(a[key], b[key], path)
        return out
    return [] if a == b else [where]


def is_live(option: str) -> bool:
    """Whether a dotted option is applied by a reload (see :data:`LIVE`)."""
    section, _, name = option.rpartition(".")
    return name in LIVE.get(section or None, frozenset())


def merged(old: EdgeSettings, new: EdgeSettings, live: list[str]) -> EdgeSettings:
    """``old`` with the ``live`` options taken from ``new``: what the unit runs with
    after a reload (every option that needs a restart keeps its old value)."""
    by_section: dict[str | None, dict[str, Any]] = {}
    for option in live:
        section, _, name = option.rpartition(".")
        part = getattr(new, section) if section else new
        by_section.setdefault(section or None, {})[name] = getattr(part, name)
    update = dict(by_section.pop(None, {}))
    for section, values in by_section.items():
        assert section is not None
        update[section] = getattr(old, section).model_copy(update=values)
    return old.model_copy(update=update)


def read_new(path: Path) -> tuple[EdgeSettings, overload.RuleBook]:
    """The settings file and the rule tables it names, validated (nothing applied);
    ZhichaoError naming the file and option, or the table, when anything is wrong."""
    settings = load_edge_settings(path)
    try:
        rules = load_rules_for(settings)
    except ZhichaoError as exc:
        raise ConfigError(f"{path}: rule tables ({settings.rules.folder or 'shipped'}, "
                          f"vendor {settings.rules.vendor}): {exc}") from None
    return settings, rules


def reload_unit(unit: "RoadsideUnit", path: Path) -> Reloaded:
    """Read ``path`` and its rule tables again and apply what may change live to
    ``unit`` (call it between two rounds of :meth:`RoadsideUnit.poll`). A file or table
    with an error changes nothing: the error is logged and returned."""
    try:
        new = read_new(path)
    except (ZhichaoError, OSError) as exc:
        return refused(unit, exc)
    return take_new(unit, path, *new)


def refused(unit: "RoadsideUnit", exc: Exception) -> Reloaded:
    """A new file or table that cannot be used: said, and nothing changed."""
    log.error("reload refused, the unit goes on with its old settings: %s", exc)
    return Reloaded(rules_digest=(unit.rules.digest, unit.rules.digest), error=str(exc))


def take_new(unit: "RoadsideUnit", path: Path, new: EdgeSettings,
             new_rules: overload.RuleBook) -> Reloaded:
    """Apply the live options of settings read (and validated) from ``path`` to
    ``unit``; name those that need a restart. The settings are compared with what the
    unit runs with now, so this is the part to run between two rounds."""
    before = unit.rules.digest
    changed = changed_options(unit.settings, new)
    live = [o for o in changed if is_live(o)]
    result = Reloaded(applied=live, restart=[o for o in changed if not is_live(o)],
                      rules_digest=(before, new_rules.digest))
    for option in result.restart:
        log.warning("%s: needs a restart: %s (the old value stays until then)", path, option)
    settings = merged(unit.settings, new, live)
    # rules.folder and vendor are live, so the merged settings name the tables read
    apply(unit, settings, new_rules)
    log.info("%s reloaded: %s; rule tables %s", path,
             ", ".join(live) if live else "no option changed that applies live",
             f"digest {before} -> {new_rules.digest}" if before != new_rules.digest
             else f"unchanged (digest {before})")
    return result


def apply(unit: "RoadsideUnit", settings: EdgeSettings, rules: overload.RuleBook) -> None:
    """Point every part of the unit that reads the live options at the new ones. Only
    attributes are replaced: the signal loop's buffers, the passes waiting, the outbox and
    the sender stay as they are."""
    unit.settings = settings
    unit.rules = rules
    unit.loop.assembler.coder = axle_coder(rules)
    unit.loop.assembler.group_threshold_m = rules.group_threshold_m
    unit.plates.settings = settings.plates
    link = unit.link
    if link is None:
        return
    link.settings = settings
    link.group_threshold_m = rules.group_threshold_m
    link.trail = link.trail.model_copy(update={"rules_digest": rules.digest})
    e = settings.evidence
    link.evidence = link.evidence.model_copy(update={
        "site": e.site, "direction": e.direction, "keep_days": e.keep_days,
        "keep_light_days": e.keep_light_days, "hold_max": e.hold_max})
    link.outbox.keep_days = e.keep_days
    link.outbox.keep_light_days = e.keep_light_days
    link.outbox.hold_max = e.hold_max
