"""The procedure after a capture, as data: steps, deadlines and conditions of
``config/rules/procedure.yaml``, with a province's ``procedure/<id>.yaml`` replacing only the
keys it gives. The center's state machine reads a :class:`Procedure`
(``RuleBook.procedure(name)``); every number and condition it applies comes from here, each
with its source.

Examples
--------
>>> from datetime import date
>>> from overload import load_rules
>>> zj = load_rules().procedure("zhejiang")
>>> zj.deadlines["defence_window"].value, zj.deadlines["pay_within"].value
(15, 15)
>>> zj.due("serve_within", date(2026, 9, 29)).date    # 7 working days over 国庆节
datetime.date(2026, 10, 14)
>>> zj.late_surcharge(2000, 10), zj.late_surcharge(2000, 40)
(600.0, 2000.0)
>>> zj.steps["decide"].from_states
('heard', 'legally_reviewed')
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import ValidationError

from overload.calendar import Calendar, period_end
from overload.errors import RuleError
from overload.tables import (
    AppealRoute,
    Counting,
    Deadline,
    FirstViolation,
    Hearing,
    LateSurcharge,
    LegalReview,
    ProcedureOverride,
    ProcedureTable,
    Source,
    Step,
)

NATIONAL = "national"
PROCEDURE_FILE = "procedure.yaml"
PROCEDURE_FOLDER = "procedure"
_PERCENT = 100.0
_FEN_DECIMALS = 2
_KEYED = ("steps", "deadlines", "reject_reasons")  # merged key by key; other sections whole


@dataclass(frozen=True)
class Due:
    """When a deadline falls: its last day, the deadline row, whether the day rests on a
    year without a holiday list (provisional), and how it was counted in words."""

    date: date
    deadline: Deadline
    provisional: bool
    note: str


@dataclass(frozen=True)
class Procedure:
    """One benchmark's procedure (national, or national with a province's keys replaced).

    Attributes
    ----------
    name : str
        ``national`` or the province file's id.
    files : Mapping[str, str]
        For each section, the file its value came from.
    steps : Mapping[str, Step]
        review, approve, notify, defence, legal_review, decide, serve, pay, close, reject.
    deadlines : Mapping[str, Deadline]
        defence_window, hearing_request, decide_within, serve_within, pay_within,
        limitation, reminder_after and (optional) review_within.
    appeal_routes : tuple of AppealRoute
    first_violation : FirstViolation
    reject_reasons : Mapping[str, str]
    no_heavier_after_defence : Source
    late_surcharge_rule, legal_review_rule, hearing_rule, counting : the rows themselves
    calendar : Calendar
    """

    name: str
    title: str
    files: Mapping[str, str]
    steps: Mapping[str, Step]
    deadlines: Mapping[str, Deadline]
    appeal_routes: tuple[AppealRoute, ...]
    first_violation: FirstViolation
    reject_reasons: Mapping[str, str]
    no_heavier_after_defence: Source
    late_surcharge_rule: LateSurcharge
    legal_review_rule: LegalReview
    hearing_rule: Hearing
    counting: Counting
    calendar: Calendar

    def deadline(self, key: str) -> Deadline:
        """The deadline ``key``; RuleError listing the known ones otherwise."""
        if key not in self.deadlines:
            raise RuleError(f"procedure {self.name!r} has no deadline {key!r} "
                            f"(known: {', '.join(self.deadlines)})")
        return self.deadlines[key]

    def due(self, deadline_key: str, start: date) -> Due:
        """The last day of deadline ``deadline_key`` counted from ``start`` by the calendar
        (start not counted; working days for Art. 85's periods; past a rest day unless the
        row says ``roll_over: false``)."""
        row = self.deadline(deadline_key)
        roll = self.counting.roll_over_on if row.roll_over else "none"
        end = period_end(start, row.value, row.unit, self.calendar, roll_over=roll)
        return Due(end.date, row, end.provisional, end.note)

    def late_surcharge(self, fine_yuan: float, days_late: int) -> float:
        """Art. 72(一): ``percent_per_day`` of the fine for each day late, at most
        ``max_times_fine`` times the fine; to the fen."""
        if not fine_yuan >= 0 or days_late < 0:
            raise RuleError(f"a fine and days late must be 0 or more (got {fine_yuan!r}, "
                            f"{days_late!r})")
        rule = self.late_surcharge_rule
        raw = fine_yuan * rule.percent_per_day / _PERCENT * days_late
        return round(min(raw, fine_yuan * rule.max_times_fine), _FEN_DECIMALS)

    def legal_review_needed(self, fine_yuan: float, *, hearing_held: bool,
                            revokes_certificate: bool) -> tuple[bool, str]:
        """Whether 法制审核 must come before the decision (Art. 58), and why in words."""
        rule = self.legal_review_rule
        cite = rule.source.cite()
        if hearing_held and rule.after_hearing:
            return True, f"a hearing was held ({cite}（二）)"
        if revokes_certificate and rule.revokes_certificate:
            return True, f"the decision revokes a certificate ({cite}; {rule.id})"
        limit = rule.fine_at_least_yuan
        if limit is not None and fine_yuan >= limit:
            return True, f"a fine of {fine_yuan:g} yuan reaches {limit:g} yuan ({rule.id})"
        return False, f"no condition of {rule.id} is met ({cite})"

    def hearing_right(self, fine_yuan: float, party_kind: Literal["person", "company"], *,
                      revokes_certificate: bool = False) -> bool:
        """Whether the proposed outcome carries the right to ask for a hearing (Art. 63):
        a 较大数额罚款 for this kind of party, or a revoked certificate."""
        rule = self.hearing_rule
        if party_kind not in ("person", "company"):
            raise RuleError(f"party kind must be person or company (got {party_kind!r})")
        if revokes_certificate and rule.revokes_certificate:
            return True
        limit = (rule.person_fine_at_least_yuan if party_kind == "person"
                 else rule.company_fine_at_least_yuan)
        return fine_yuan >= limit

    def step_allowed(self, step: str, state: str, *, penalty: bool = True) -> bool:
        """Whether ``step`` may be taken from ``state`` (``penalty``: the decision, if any,
        was a penalty; some steps start from a state only without one)."""
        row = self.steps[step]
        if state not in row.from_states:
            return False
        return not (penalty and state in row.only_without_penalty)


def _sections(model, names) -> dict:
    return {name: getattr(model, name) for name in names}


def build_procedure(national: ProcedureTable, national_file: str, calendar: Calendar,
                    override: ProcedureOverride | None = None,
                    override_file: str | None = None) -> Procedure:
    """The national procedure with ``override``'s keys replacing the national ones."""
    fields = [f for f in ProcedureTable.model_fields if f not in ("id", "title")]
    merged = _sections(national, fields)
    files = dict.fromkeys(fields, national_file)
    if override is not None:
        for name in fields:
            value = getattr(override, name)
            if name in _KEYED:
                if value:
                    merged[name] = {**merged[name], **value}
                    files.update({f"{name}.{key}": str(override_file) for key in value})
            elif value is not None:
                merged[name], files[name] = value, str(override_file)
        try:
            checked = ProcedureTable.model_validate(
                {"id": override.id, "title": override.title, **merged})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "(top)"
            raise RuleError(f"{override_file}: merged with {national_file}: option "
                            f"'{where}': {first['msg']}") from None
    else:
        checked = national
    return Procedure(
        name=checked.id, title=checked.title, files=MappingProxyType(files),
        steps=MappingProxyType(dict(checked.steps)),
        deadlines=MappingProxyType(dict(checked.deadlines)),
        appeal_routes=checked.appeal_routes, first_violation=checked.first_violation,
        reject_reasons=MappingProxyType(dict(checked.reject_reasons)),
        no_heavier_after_defence=checked.no_heavier_after_defence,
        late_surcharge_rule=checked.late_surcharge, legal_review_rule=checked.legal_review,
        hearing_rule=checked.hearing, counting=checked.counting, calendar=calendar,
    )


@dataclass(frozen=True)
class ProcedureFiles:
    """The procedure tables of a rules folder, validated, before merging."""

    national: ProcedureTable | None
    national_file: str
    overrides: Mapping[str, tuple[ProcedureOverride, str]]
    missing_file: str


def load_procedure_files(root: Path, load: Callable, display: Callable = str
                         ) -> ProcedureFiles:
    """Read ``procedure.yaml`` (absent: None) and every ``procedure/<id>.yaml`` (each id
    must match its file name) with ``load(path, model)``."""
    path = root / PROCEDURE_FILE
    national = load(path, ProcedureTable) if path.is_file() else None
    if national is not None and national.id != NATIONAL:
        raise RuleError(f"{display(path)}: option 'id' must be {NATIONAL!r} "
                        f"(got {national.id!r})")
    folder = root / PROCEDURE_FOLDER
    overrides: dict[str, tuple[ProcedureOverride, str]] = {}
    for file in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        table: ProcedureOverride = load(file, ProcedureOverride)
        if table.id != file.stem or table.id == NATIONAL:
            raise RuleError(f"{display(file)}: option 'id' must match the file name "
                            f"{file.stem!r} and not be {NATIONAL!r} (got {table.id!r})")
        overrides[table.id] = (table, str(display(file)))
    return ProcedureFiles(national, str(display(path)), MappingProxyType(overrides),
                          str(display(path)))


def procedures(files: ProcedureFiles, calendar: Calendar) -> dict[str, Procedure]:
    """Every procedure: national, and national merged with each province's file."""
    if files.national is None:
        return {}
    out = {NATIONAL: build_procedure(files.national, files.national_file, calendar)}
    for name, (override, file) in files.overrides.items():
        out[name] = build_procedure(files.national, files.national_file, calendar,
                                    override, file)
    return out
