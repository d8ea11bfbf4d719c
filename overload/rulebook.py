"""Load the rule tables once, check them against each other, and fingerprint them.

:func:`load_rules` reads every table of a rules folder into its pydantic model, then runs the
checks no single file can make (rule ids unique across files, vehicle map consistent with
the digits and the limits), and returns a frozen :class:`RuleBook` with a SHA-256 ``digest``
of the validated content: the digest changes when a value changes, not when a comment does,
and goes into every evidence packet.
"""

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from overload.calendar import Calendar, load_calendar
from overload.errors import RuleError
from overload.procedure import (
    NATIONAL,
    PROCEDURE_FOLDER,
    Procedure,
    ProcedureFiles,
    load_procedure_files,
    procedures,
)
from overload.tables import (
    AxleCodesTable,
    AxleLimitsTable,
    Benchmark,
    Digit,
    EnforcementTable,
    LimitsTable,
    MassLimit,
    Rule,
    TolerancePolicy,
    ToleranceTable,
    VehicleEntry,
)
from zhichao.resources import rules_dir
from zhichao.settings import load_model

TABLE_FILES = {
    "limits": ("limits.yaml", LimitsTable),
    "axle_limits": ("axle_limits.yaml", AxleLimitsTable),
    "axle_codes": ("axle_codes.yaml", AxleCodesTable),
    "tolerance": ("tolerance.yaml", ToleranceTable),
    "enforcement": ("enforcement.yaml", EnforcementTable),
}
BENCHMARK_FOLDER = "benchmarks"


@dataclass(frozen=True, eq=False)
class RuleBook:
    """All rule tables in force, validated, with their digest.

    Attributes
    ----------
    folder : Path
        The rules folder the tables were read from.
    vendor : str
        The vendor table chosen for digits 8 and 9.
    digits : Mapping[str, Digit]
        Standard digits plus the chosen vendor's.
    enforcement : EnforcementTable
        Numbers of procedure the center applies (notice lead time, the repeat count of
        公路安全保护条例 Art. 66, the report deadline of Order 62 Art. 44).
    digest : str
        SHA-256 (hex) of the canonical content of all tables and the vendor choice.
    """

    folder: Path
    vendor: str
    limits: LimitsTable
    axle_limits: AxleLimitsTable
    axle_codes: AxleCodesTable
    tolerance: ToleranceTable
    enforcement: EnforcementTable
    benchmarks: Mapping[str, Benchmark]
    digits: Mapping[str, Digit]
    rules: Mapping[str, Rule]
    digest: str
    calendar: Calendar = field(default_factory=lambda: Calendar.of(()))
    procedures: Mapping[str, Procedure] = field(default_factory=lambda: MappingProxyType({}))
    procedure_file: str = "procedure.yaml"

    @property
    def group_threshold_m(self) -> float:
        """Axles closer than this (metres) form one group."""
        return self.axle_codes.group_threshold.threshold_m

    def benchmark(self, name: str) -> Benchmark:
        """The benchmark ``name``; RuleError listing the known ones otherwise."""
        if name not in self.benchmarks:
            known = ", ".join(sorted(self.benchmarks))
            raise RuleError(f"unknown benchmark {name!r} (known: {known})")
        return self.benchmarks[name]

    def procedure(self, name: str) -> Procedure:
        """The procedure ``name``: ``national``, or a province with its own file under
        ``procedure/`` (national with that file's keys replaced). Any other name is a
        RuleError naming the file looked for: a province never silently falls back to the
        national procedure."""
        if name in self.procedures:
            return self.procedures[name]
        if name == NATIONAL or not self.procedures:
            raise RuleError(f"{self.procedure_file}: procedure table is missing")
        folder = Path(self.procedure_file).parent / PROCEDURE_FOLDER
        raise RuleError(f"no procedure {name!r}: {folder / f'{name}.yaml'} not found "
                        f"(known: {', '.join(sorted(self.procedures))})")

    def tolerance_policy(self, name: str) -> TolerancePolicy:
        """The tolerance policy ``name``; RuleError listing the known ones otherwise."""
        for policy in self.tolerance.policies:
            if policy.id == name:
                return policy
        known = ", ".join(p.id for p in self.tolerance.policies)
        raise RuleError(f"unknown tolerance policy {name!r} (known: {known})")

    def mass_limit(self, limit_id: str) -> MassLimit:
        """The total-mass limit row with id ``limit_id``."""
        for row in self.limits.mass_limits:
            if row.id == limit_id:
                return row
        raise RuleError(f"limits.yaml has no mass limit {limit_id!r}")


def load_rules(folder: Path | None = None, *, vendor: str = "generic") -> RuleBook:
    """Read, validate and fingerprint the rule tables of ``folder``.

    Parameters
    ----------
    folder : Path, optional
        A rules folder laid out like ``config/rules``; default: the shipped one.
    vendor : str
        Which vendor table of ``axle_codes.yaml`` gives digits 8 and 9.

    Returns
    -------
    RuleBook

    Raises
    ------
    RuleError
        Naming the file, the key and the value of the first problem found.

    Examples
    --------
    >>> rules = load_rules()
    >>> rules.group_threshold_m
    1.9
    >>> sorted(rules.benchmarks)
    ['national', 'zhejiang']
    >>> rules.enforcement.notice_lead.unit
    'days'
    >>> len(rules.digest)
    64
    >>> sorted(rules.procedures), rules.calendar.known(2026)
    (['national', 'zhejiang'], True)
    """
    root = Path(folder) if folder is not None else rules_dir()
    tables = {key: _load(root / name, model) for key, (name, model) in TABLE_FILES.items()}
    benchmarks = _load_benchmarks(root)
    codes: AxleCodesTable = tables["axle_codes"]
    digits = _digits_for(codes, vendor, root)
    calendar = load_calendar(root, _load, _display)
    proc_files = load_procedure_files(root, _load, _display)
    index = _rule_index(root, tables, benchmarks, proc_files)
    limits = {row.id: row for row in tables["limits"].mass_limits}
    _check_vehicle_map(codes, digits, limits, vendor, root)
    _check_defaults(codes, limits, root)
    _check_benchmark_links(benchmarks, root)
    content = {key: _canonical(model) for key, model in tables.items()}
    content["benchmarks"] = {name: _canonical(b) for name, b in benchmarks.items()}
    content["vendor"] = vendor
    content["calendar"] = {str(y): _canonical(t) for y, t in calendar.years.items()}
    content["procedure"] = _canonical(proc_files.national) if proc_files.national else None
    content["procedure_overrides"] = {n: _canonical(t) for n, (t, _) in
                                      proc_files.overrides.items()}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)
    return RuleBook(
        folder=root,
        vendor=vendor,
        benchmarks=MappingProxyType(benchmarks),
        digits=MappingProxyType(digits),
        rules=MappingProxyType(index),
        digest=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        calendar=calendar,
        procedures=MappingProxyType(procedures(proc_files, calendar)),
        procedure_file=proc_files.national_file,
        **tables,
    )


def _display(path: Path) -> Path:
    """The path as a person would type it: relative to the working folder when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _load(path: Path, model: type[BaseModel]) -> Any:
    if not path.is_file():
        raise RuleError(f"{_display(path)}: rule table is missing")
    return load_model(_display(path), model, error=RuleError)


def _load_benchmarks(root: Path) -> dict[str, Benchmark]:
    folder = root / BENCHMARK_FOLDER
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        raise RuleError(f"{_display(folder)}: no benchmark tables (*.yaml) found")
    benchmarks = {}
    for path in files:
        bench = _load(path, Benchmark)
        if bench.id != path.stem:
            raise RuleError(
                f"{_display(path)}: option 'id' must match the file name {path.stem!r} "
                f"(got {bench.id!r})"
            )
        benchmarks[bench.id] = bench
    return benchmarks


def _canonical(model: BaseModel) -> Any:
    """The validated content as plain data (comments and key order play no part)."""
    return model.model_dump(mode="python")


def _walk_rules(obj: Any, path: str) -> Iterator[tuple[str, Rule]]:
    """Every Rule inside ``obj``, with its dotted key path."""
    if isinstance(obj, Rule):
        yield path, obj
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _walk_rules(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            yield from _walk_rules(item, f"{path}.{i}")
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _walk_rules(item, f"{path}.{key}")


def _rule_index(root: Path, tables: dict[str, Any], benchmarks: dict[str, Benchmark],
                proc: ProcedureFiles) -> dict:
    """Map rule id → rule; a repeated id is an error naming both places."""
    index: dict[str, Rule] = {}
    where: dict[str, str] = {}
    files = [(root / TABLE_FILES[k][0], m) for k, m in tables.items()]
    files += [(root / BENCHMARK_FOLDER / f"{n}.yaml", b) for n, b in benchmarks.items()]
    if proc.national is not None:
        files.append((root / "procedure.yaml", proc.national))
    files += [(root / PROCEDURE_FOLDER / f"{n}.yaml", t) for n, (t, _) in proc.overrides.items()]
    for path, model in files:
        for key, rule in _walk_rules(model, ""):
            here = f"{_display(path)}: option '{key}.id'"
            if rule.id in index:
                raise RuleError(
                    f"{here}: rule id {rule.id!r} is already used at {where[rule.id]}; "
                    "rule ids must be unique across all tables"
                )
            index[rule.id] = rule
            where[rule.id] = here
    return index


def _digits_for(codes: AxleCodesTable, vendor: str, root: Path) -> dict[str, Digit]:
    if vendor not in codes.vendors:
        raise RuleError(
            f"{_display(root / 'axle_codes.yaml')}: unknown vendor {vendor!r} for digits "
            f"(known under 'vendors': {', '.join(sorted(codes.vendors))})"
        )
    return {**codes.digits.table, **codes.vendors[vendor].table}


def _check_vehicle_map(
    codes: AxleCodesTable, digits: dict, limits: dict, vendor: str, root: Path
) -> None:
    """Each listed code: digits known, axle count right, groups exist, limit consistent."""
    for i, entry in enumerate(codes.vehicles.codes):
        where = f"{_display(root / 'axle_codes.yaml')}: option 'vehicles.codes.{i}"
        if entry.vendors is not None and vendor not in entry.vendors:
            continue
        bad = [d for d in entry.code if d not in digits]
        if bad:
            raise RuleError(
                f"{where}.code' {entry.code!r} uses digit {bad[0]!r}, not defined for vendor "
                f"{vendor!r} (list the code's vendors under 'vendors')"
            )
        _check_entry(entry, digits, limits, where)


def _check_entry(entry: VehicleEntry, digits: dict, limits: dict, where: str) -> None:
    sizes = [digits[d].axles for d in entry.code]
    if sum(sizes) != entry.axles:
        raise RuleError(
            f"{where}.axles' is {entry.axles} but code {entry.code!r} has {sum(sizes)} axles"
        )
    for key in ("drive_groups", "trailer_groups"):
        for group in getattr(entry, key):
            if group > len(sizes):
                raise RuleError(
                    f"{where}.{key}' names group {group} but code {entry.code!r} has "
                    f"{len(sizes)} groups"
                )
    drive_axles = sum(sizes[g - 1] for g in entry.drive_groups)
    if entry.single_drive_axle is False and drive_axles < 2:
        raise RuleError(
            f"{where}.single_drive_axle' is false but the drive groups of code "
            f"{entry.code!r} hold {drive_axles} axle (set it to true)"
        )
    if entry.limit not in limits:
        raise RuleError(
            f"{where}.limit' names unknown limit {entry.limit!r} "
            f"(known: {', '.join(sorted(limits))})"
        )
    expected = find_limit(
        limits.values(), entry.kind, entry.axles, entry.single_drive_axle
    )
    if expected is None or expected.id != entry.limit:
        raise RuleError(
            f"{where}.limit' is {entry.limit!r} but a {entry.kind} with {entry.axles} axles"
            f"{' and a single drive axle' if entry.single_drive_axle else ''} takes "
            f"{expected.id if expected else 'no limit'!r} in limits.yaml"
        )


def _check_defaults(codes: AxleCodesTable, limits: dict, root: Path) -> None:
    seen: set[int] = set()
    for i, row in enumerate(codes.defaults):
        where = f"{_display(root / 'axle_codes.yaml')}: option 'defaults.{i}"
        if row.axles in seen:
            raise RuleError(f"{where}.axles' repeats axle count {row.axles}")
        seen.add(row.axles)
        if row.limit not in limits:
            raise RuleError(
                f"{where}.limit' names unknown limit {row.limit!r} "
                f"(known: {', '.join(sorted(limits))})"
            )


def _check_benchmark_links(benchmarks: dict[str, Benchmark], root: Path) -> None:
    for name, bench in benchmarks.items():
        ref = bench.dimensions_from.benchmark if bench.dimensions_from is not None else None
        if ref is not None and (ref not in benchmarks or benchmarks[ref].dimensions is None):
            with_dims = sorted(n for n, b in benchmarks.items() if b.dimensions is not None)
            raise RuleError(
                f"{_display(root / BENCHMARK_FOLDER / f'{name}.yaml')}: option "
                f"'dimensions_from.benchmark' names {ref!r}, which has no dimension scale "
                f"(benchmarks with one: {', '.join(with_dims)})"
            )


def find_limit(
    rows: Any, kind: str, axles: int, single_drive_axle: bool
) -> MassLimit | None:
    """The total-mass limit for a kind and axle count, the single-drive row when it applies.

    Rows with ``and_more`` cover every larger axle count too; among matches the one with
    the largest ``axles`` wins, and a ``single_drive_axle`` row only when the vehicle has a
    single drive axle.
    """
    matches = [
        row
        for row in rows
        if row.kind == kind
        and (row.axles == axles or (row.and_more and axles > row.axles))
        and (not row.single_drive_axle or single_drive_axle)
    ]
    if not matches:
        return None
    return max(matches, key=lambda row: (row.axles, row.single_drive_axle))
