"""The device registry: where each enforcement device stands, its review, verification
certificate, signs, public notice, enforcement start and suspensions — imported from a CSV
or YAML file that the authority keeps.

A file is read row by row and every row is validated, by form and by meaning: an accuracy
class the tolerance table knows, a notice URL that is an http(s) address, dates from
:data:`EARLIEST_DATE` to a year ahead (:data:`DAYS_AHEAD`). Valid rows go to the database
in chunks of :data:`CHUNK_ROWS` as the file is read, in the caller's transaction, so a
registry of 50 000 devices is imported in bounded memory. The import is all or nothing:
after a bad row nothing more is written, the rest of the file is still checked, and the
error lists every bad row (up to :data:`MAX_ERRORS`, then their number) for the caller to
roll back. The error names the file, the row, the column and the value ("devices.csv row
4: certificate_valid_to '2025-13-01' is not a date (YYYY-MM-DD)"). In a CSV file the row
is the spreadsheet's row (the header is row 1); in a YAML file it is the device's place in
the list, from 1. The vehicle and staff registers read their files the same way
(:func:`file_rows`, :func:`validated`).

The registry keeps history: a device row is never updated. Importing again adds a version
of each device whose row changed, in force from the row's ``effective_from`` (a CST
calendar day) or, without one, from the import day; a row saying what the latest version
says adds nothing, and a version that would start before the latest is refused with its
row named. A device's first version is in force from its ``effective_from`` or else from
:data:`EARLIEST_DATE` (its own dates — review, certificate, notice — decide each check).
So a capture is judged by the row in force on its day (:func:`device_on`), and a renewed
certificate does not rewrite the past (:func:`device_history`). Devices not in the file are
left as they are; a device's suspensions (dated periods themselves) are replaced by the
file's.

Files are read in the encodings a spreadsheet writes: UTF-8 with or without its byte order
mark, UTF-16 with one (Excel's "Unicode text", tab-separated), GB18030 and its subset GBK
(Excel's CSV on a Chinese desktop): a byte order mark decides; without one the file is
UTF-8 if all of it decodes as UTF-8, else GB18030. ``encoding=`` chooses instead. A file
that does not decode is named with its line.

CSV suspensions are one cell: ``FROM..TO reason; FROM.. reason`` (an empty TO: open).
"""

import codecs
import csv
import functools
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, aliased

from center import audit
from center.china_time import today as china_today
from center.db import bulk_insert
from center.law_models import DeviceRecord, DeviceSuspension
from zhichao.errors import ZhichaoError

MAX_ERRORS = 50
"""Errors listed at most; a file with more is surely in the wrong format."""
CHUNK_ROWS = 2000
"""Devices written to the database at a time."""
EARLIEST_DATE = date(2000, 1, 1)
"""No registry date is earlier: no device of this kind was reviewed or certified before.
A date before it is a slip — a 0 or a serial number read as a date gives 1970-01-01."""
DAYS_AHEAD = 366
"""A review, a certificate's start, signs, a notice, an enforcement start or a suspension's
start may be planned up to a year after today (China Standard Time); later is a typo."""
END_YEARS_AHEAD = 10
"""A certificate's last day or a suspension's end may lie up to ten years ahead."""
READ_BYTES = 1 << 16
"""Bytes of the file decoded at a time."""
BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"))
"""Byte order marks and the encoding each one announces."""
FALLBACK_ENCODING = "gb18030"
"""A file without a byte order mark that is not UTF-8 is read as GB18030 (GBK's superset)."""


class RegistryError(ZhichaoError):
    """A registry file cannot be imported; nothing of it was written."""


@functools.cache
def shipped_accuracy_classes() -> tuple[str, ...]:
    """The accuracy classes of the shipped tolerance table."""
    from overload import load_rules  # noqa: PLC0415 (the rule tables only when needed)

    return accuracy_classes(load_rules())


def accuracy_classes(rules: Any) -> tuple[str, ...]:
    """Every accuracy class of the rule book's tolerance table (its ``mpe`` policies), as
    the table's keys ('0.2', '5')."""
    from overload.tolerance import class_key  # noqa: PLC0415

    keys: dict[str, None] = {}
    for policy in rules.tolerance.policies:
        for key in policy.mpe_percent_of_measured or {}:
            keys[class_key(key)] = None
    return tuple(keys)


_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_WEB_ADDRESS = re.compile(r"https?://[^\s/?#@\\\x00-\x1f\x7f]+(?:[/?#][^\s\x00-\x1f\x7f]*)?",
                          re.IGNORECASE)
"""http(s)://, a host (no user name: ``https://gov.cn@elsewhere`` is not the authority's
page), then a path, query or fragment, with no space or control character anywhere."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str | None) -> str | None:
    """Text without control characters (PostgreSQL stores no NUL; a tab or a line break
    in a cell is a paste gone wrong)."""
    if value is not None and _CONTROL.search(value):
        raise ValueError("holds a control character (NUL, tab, line break…)")
    return value


def _iso_date(value: Any) -> date | None:
    """A calendar day written YYYY-MM-DD (or a YAML date); never a number or a time."""
    if type(value) is str and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    elif value is None or type(value) is date:
        return value
    raise ValueError("is not a date (YYYY-MM-DD)")


Day = Annotated[date | None, BeforeValidator(_iso_date)]


class SuspensionRow(BaseModel):
    """A period of calendar days (both included) in which the device gives no evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    starts: Annotated[date, BeforeValidator(_iso_date)]
    ends: Day = None
    reason: str = Field(min_length=1, max_length=1000)

    _text = field_validator("reason")(_printable)

    @model_validator(mode="after")
    def _ordered(self) -> "SuspensionRow":
        if self.ends is not None and self.ends < self.starts:
            raise ValueError(f"suspension ends {self.ends} before it starts {self.starts}")
        return self


PLANNED_DATES = ("review_date", "certificate_valid_from", "signs_installed", "notice_date",
                 "enforcement_start", "effective_from")
"""Dates of a device that lie at most :data:`DAYS_AHEAD` days ahead."""


class DeviceRow(BaseModel):
    """One device of the registry file. Validation takes a context of ``today`` (a date)
    and ``classes`` (the tolerance table's accuracy classes); by default today in China
    and the shipped table."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    device_id: str = Field(min_length=1, max_length=64)
    road: str = Field(min_length=1, max_length=128)
    stake: str = Field(min_length=1, max_length=64, description="桩号, e.g. K123+450")
    direction: str = Field(min_length=1, max_length=64)
    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    review_date: Day = None
    certificate_number: str | None = Field(None, max_length=128)
    accuracy_class: str | None = None
    certificate_valid_from: Day = None
    certificate_valid_to: Day = None
    signs_installed: Day = None
    notice_date: Day = None
    notice_document: str | None = Field(None, max_length=256)
    notice_url: str | None = Field(None, max_length=2000)
    enforcement_start: Day = None
    active: bool = True
    suspensions: list[SuspensionRow] = []
    effective_from: Day = Field(None, description=(
        "first day (CST) this row is in force, when it changes the device; default: the "
        "import day (a device's first row: the earliest day, EARLIEST_DATE)"))

    _text = field_validator("device_id", "road", "stake", "direction", "certificate_number",
                            "notice_document")(_printable)

    @field_validator("accuracy_class", mode="before")
    @classmethod
    def _known_class(cls, value: Any, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        known = (info.context or {}).get("classes") or shipped_accuracy_classes()
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                key = f"{float(value):g}"
            except ValueError:
                key = None
            if key in known:
                return key
        raise ValueError(f"is not an accuracy class of the tolerance table (known: "
                         f"{', '.join(known)})")

    @field_validator("notice_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _WEB_ADDRESS.fullmatch(value):
            raise ValueError("must be an http:// or https:// address")
        return value

    @model_validator(mode="after")
    def _plausible(self, info: ValidationInfo) -> "DeviceRow":
        start, end = self.certificate_valid_from, self.certificate_valid_to
        if start is not None and end is not None and end < start:
            raise ValueError(f"certificate_valid_to {end} is before certificate_valid_from "
                             f"{start}")
        planned, ends = _latest_days((info.context or {}).get("today") or china_today())
        days = [(name, getattr(self, name), planned) for name in PLANNED_DATES]
        days.append(("certificate_valid_to", end, ends))
        for i, stop in enumerate(self.suspensions):
            days += [(f"suspensions.{i} starts", stop.starts, planned),
                     (f"suspensions.{i} ends", stop.ends, ends)]
        for name, day, latest in days:
            if day is not None and not EARLIEST_DATE <= day <= latest:
                _implausible(name, day, latest is planned, latest)
        return self


@functools.lru_cache(maxsize=4)
def _latest_days(today: date) -> tuple[date, date]:
    """The latest day a planned date and an end date may be, from ``today``."""
    return (today + timedelta(days=DAYS_AHEAD),
            today.replace(year=today.year + END_YEARS_AHEAD, day=min(today.day, 28)))


def _implausible(name: str, day: date, planned: bool, latest: date) -> None:
    """Raise the reason why the day ``name`` cannot be."""
    if day < EARLIEST_DATE:
        raise ValueError(f"{name} {day} is before {EARLIEST_DATE}: no device was certified "
                         f"then (a number read as a date gives 1970-01-01)")
    ahead = "more than a year ahead" if planned else f"more than {END_YEARS_AHEAD} years ahead"
    raise ValueError(f"{name} {day} is {ahead} (latest {latest})")


@dataclass(frozen=True)
class ImportResult:
    """What an import did: devices added, devices changed (``updated``: a new version
    each), the file's ids in order, and devices the file left as they were."""

    added: int
    updated: int
    devices: tuple[str, ...]
    unchanged: int = 0


@dataclass(frozen=True)
class BadRow:
    """A row that could not even be split into fields, and why."""

    message: str


@dataclass
class Refusals:
    """The bad rows of a file: the first :data:`MAX_ERRORS` lines, and how many; the
    error raised is of class ``kind`` (each register its own)."""

    lines: list[str] = field(default_factory=list)
    count: int = 0
    kind: type[ZhichaoError] = RegistryError

    def add(self, messages: Iterable[str]) -> None:
        for message in messages:
            self.count += 1
            if len(self.lines) < MAX_ERRORS:
                self.lines.append(message)

    def error(self) -> RegistryError:
        more = f"\n… and {self.count - len(self.lines)} more" \
            if self.count > len(self.lines) else ""
        return self.kind("nothing imported:\n" + "\n".join(self.lines) + more)


FIELDS = tuple(DeviceRow.model_fields)
CONTENT = tuple(f for f in FIELDS if f not in ("suspensions", "effective_from"))
"""What a version of a device says: a row saying the same adds no version."""
_WORDS = {
    "date_from_datetime_parsing": "is not a date (YYYY-MM-DD)",
    "date_parsing": "is not a date (YYYY-MM-DD)",
    "date_type": "is not a date (YYYY-MM-DD)",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "bool_parsing": "is not true or false",
    "missing": "is required but missing",
    "extra_forbidden": "is not a known column",
    "string_too_short": "is empty",
}


def _describe(where: str, exc: ValidationError) -> Iterator[str]:
    """One line per problem: the row, the column, the value and what was wrong."""
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        words = _WORDS.get(err["type"])
        if words is None:
            words = err["msg"].removeprefix("Value error, ")
            words = words.replace("Input should be", "must be")
        shown = "" if err["type"] in ("missing",) or isinstance(value, dict | list) \
            else f" {value!r}"
        if loc:
            yield f"{where}: {loc}{shown} {words}"
        else:
            yield f"{where}: {words}"


def _parse_suspensions(cell: str) -> list[dict[str, Any]]:
    """``FROM..TO reason; FROM.. reason`` → suspension dicts (validated later)."""
    out = []
    for part in (p.strip() for p in cell.split(";")):
        if not part:
            continue
        span, _, reason = part.partition(" ")
        starts, sep, ends = span.partition("..")
        if not sep:
            raise ValueError(f"suspension {part!r} is not FROM..TO reason")
        out.append({"starts": starts, "ends": ends or None, "reason": reason.strip()})
    return out


def _bom(path: Path) -> tuple[str | None, int, bytes]:
    """The encoding a byte order mark announces and the mark's length; the file's head."""
    with path.open("rb") as f:
        head = f.read(4096)
    for mark, name in BOMS:
        if head.startswith(mark):
            return name, len(mark), head
    return None, 0, head


def _decodes(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes in ``encoding`` (read a piece at a time)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    with path.open("rb") as f:
        try:
            for piece in iter(lambda: f.read(READ_BYTES), b""):
                decoder.decode(piece)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def choose_encoding(path: Path, encoding: str | None = None) -> tuple[str, int, str]:
    """The codec to read ``path`` with, the bytes of byte order mark to skip, and how
    the codec is named in errors."""
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise RegistryError(f"{path}: unknown encoding {encoding!r} (e.g. utf-8, gbk, "
                                f"gb18030, utf-16)") from None
        announced, skip, _ = _bom(path)
        if name in ("utf-16", "utf-8-sig") and announced is not None:
            return announced, skip, name  # the mark says which UTF-16
        if name == "utf-16":
            return "utf-16-le", 0, name
        return ("utf-8", skip, name) if name == "utf-8-sig" else (name, 0, name)
    announced, skip, head = _bom(path)
    if announced is not None:
        return announced, skip, announced
    if head.count(b"\x00") * 4 > len(head):  # UTF-16 text: one byte in two is NUL
        raise RegistryError(f"{path}: NUL bytes and no byte order mark: UTF-16 without a "
                            f"byte order mark? Choose it: --encoding utf-16-le (or utf-16-be)")
    if _decodes(path, "utf-8"):
        return "utf-8", 0, "utf-8"
    return FALLBACK_ENCODING, 0, f"utf-8 nor {FALLBACK_ENCODING}"


def text_lines(path: Path, encoding: str | None = None) -> Iterator[str]:
    """The file's lines (each with its ``\\n``), decoded a piece at a time; RegistryError
    naming the line that does not decode."""
    codec, skip, label = choose_encoding(path, encoding)
    decoder = codecs.getincrementaldecoder(codec)("strict")
    line, tail = 1, ""
    with path.open("rb") as f:
        f.seek(skip)
        while True:
            piece = f.read(READ_BYTES)
            try:
                text = tail + decoder.decode(piece, final=not piece)
            except UnicodeDecodeError as exc:
                before = exc.object[:exc.start].decode(codec, errors="replace")
                bad = exc.object[exc.start:exc.start + 2].hex(" ")
                raise RegistryError(
                    f"{path} line {line + before.count(chr(10))}: not {label} (bytes {bad}); "
                    f"choose the file's encoding with --encoding (e.g. gbk, gb18030, "
                    f"utf-16)") from None
            *whole, tail = text.split("\n")
            for one in whole:
                yield one + "\n"
            line += len(whole)
            if not piece:
                break
    if tail:
        yield tail


def _device_cells(data: dict[str, Any]) -> dict[str, Any]:
    """A device's CSV cells as its fields: the suspensions cell split (ValueError)."""
    if "suspensions" in data:
        data["suspensions"] = _parse_suspensions(data["suspensions"])
    return data


@dataclass(frozen=True)
class Layout:
    """How a register's file is laid out: its columns (``fields``), the YAML key of its
    list (``key``: ``devices:``), the field naming a YAML row in errors (``label``), and
    what turns a CSV row's cells into fields (``cells``; ValueError names the problem)."""

    fields: tuple[str, ...]
    key: str
    label: str
    cells: Any = None


DEVICES = Layout(FIELDS, "devices", "device_id", _device_cells)


def _csv_rows(path: Path, lines: Iterator[str], layout: Layout = DEVICES
              ) -> Iterator[tuple[str, dict[str, Any] | BadRow]]:
    """Each data row of a CSV file as (where, dict); empty cells are absent values. The
    header decides the separator: a tab if it has tabs and no commas, else a comma."""
    first = next(lines, "")
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
    try:
        names = [c.strip() for c in next(reader, [])]
        if not any(names):
            raise RegistryError(f"{path}: empty file (the header row names the columns: "
                                f"{', '.join(layout.fields)})")
        unknown = [c for c in names if c and c not in layout.fields]
        if unknown:
            raise RegistryError(f"{path} row 1: unknown column(s) {', '.join(unknown)} "
                                f"(known: {', '.join(layout.fields)})")
        width = len(names)
        for cells in reader:
            where = f"{path.name} row {reader.line_num}"
            if not cells:
                continue
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                yield where, BadRow(f"{where}: more cells than the header has columns")
                continue
            data: dict[str, Any] = {k: v.strip() for k, v in zip(names, cells, strict=False)
                                    if k and v and not v.isspace()}
            if layout.cells is not None:
                try:
                    data = layout.cells(data)
                except ValueError as exc:
                    yield where, BadRow(f"{where}: {exc}")
                    continue
            yield where, data
    except csv.Error as exc:
        raise RegistryError(f"{path} row {reader.line_num}: not CSV: {exc}") from None


YAML_DEPTH = 8
"""Nesting of a device's YAML at most (a device, its suspensions, each suspension)."""
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Reader:
    """Lines as a file that YAML's parser reads a piece at a time."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def read(self, size: int = -1) -> str:
        return "".join(itertools.islice(self._lines, max(1, size // 80)))


def _yaml_node(loader: Any, depth: int = 0) -> yaml.Node:
    """The next node of the YAML stream, built from its events (no aliases)."""
    event = loader.get_event()
    if depth > YAML_DEPTH:
        raise yaml.MarkedYAMLError(problem=f"nested deeper than {YAML_DEPTH}",
                                   problem_mark=event.start_mark)
    if isinstance(event, yaml.ScalarEvent):
        tag = event.tag if event.tag not in (None, "!") else \
            loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        return yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark,
                               style=event.style)
    if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
        sequence = isinstance(event, yaml.SequenceStartEvent)
        end = yaml.SequenceEndEvent if sequence else yaml.MappingEndEvent
        children: list[Any] = []
        while not loader.check_event(end):
            child = _yaml_node(loader, depth + 1)
            children.append(child if sequence else (child, _yaml_node(loader, depth + 1)))
        loader.get_event()
        kind = yaml.SequenceNode if sequence else yaml.MappingNode
        tag = event.tag if event.tag not in (None, "!") else \
            loader.resolve(kind, None, event.implicit)
        return kind(tag, children, event.start_mark, event.end_mark,
                    flow_style=event.flow_style)
    raise yaml.MarkedYAMLError(problem="an alias (*name) is not read in a registry",
                               problem_mark=event.start_mark)


def _yaml_devices(path: Path, loader: Any, key: str = "devices") -> Iterator[Any]:
    """Each item of the list, built one at a time from the parser's events."""
    expected = RegistryError(f"{path}: expected a list of {key} (or '{key}:' with one)")
    loader.get_event()  # the stream starts
    if loader.check_event(yaml.StreamEndEvent):
        raise expected
    loader.get_event()  # the document starts
    named = loader.check_event(yaml.MappingStartEvent)
    if named:
        loader.get_event()
        if not loader.check_event(yaml.ScalarEvent) or loader.peek_event().value != key:
            raise expected
        loader.get_event()
    if not loader.check_event(yaml.SequenceStartEvent):
        raise expected
    loader.get_event()
    while not loader.check_event(yaml.SequenceEndEvent):
        yield loader.construct_document(_yaml_node(loader))
    loader.get_event()
    if named and not loader.check_event(yaml.MappingEndEvent):
        raise expected
    while not loader.check_event(yaml.StreamEndEvent):  # the rest must parse too
        loader.get_event()


def _yaml_rows(path: Path, lines: Iterator[str], layout: Layout = DEVICES
               ) -> Iterator[tuple[str, Any]]:
    """Each item of a YAML file (a list, or a mapping with ``devices:`` — the layout's
    key), read an item at a time."""
    loader = _YamlLoader(_Reader(lines))
    devices = _yaml_devices(path, loader, layout.key)
    i = 0
    try:
        while True:
            try:
                item = next(devices)
            except StopIteration:
                break
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f" line {mark.line + 1}" if mark is not None else ""
                raise RegistryError(f"{path}:{line} not valid YAML: "
                                    f"{getattr(exc, 'problem', exc)}") from None
            i += 1
            label = f" ({item[layout.label]})" \
                if isinstance(item, dict) and layout.label in item else ""
            yield f"{path.name} row {i}{label}", item
    finally:
        loader.dispose()


def file_rows(path: Path, layout: Layout, encoding: str | None = None
              ) -> Iterator[tuple[str, dict[str, Any] | BadRow]]:
    """Each row of a register's CSV or YAML file as (where, data), read as the file is;
    RegistryError for a file that cannot be read at all. Every register (devices,
    vehicles, staff) reads its files through this."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise RegistryError(f"{path}: unknown format {suffix!r} (use .csv, .yaml or .yml)")
    if not path.is_file():
        raise RegistryError(f"{path}: cannot read: no such file")
    lines = text_lines(path, encoding)
    if suffix == ".csv":
        return _csv_rows(path, lines, layout)
    return _yaml_rows(path, lines, layout)


def validated(path: Path, model: type[BaseModel], layout: Layout, refusals: Refusals, *,
              key: Any, encoding: str | None = None, context: dict[str, Any] | None = None
              ) -> Iterator[tuple[str, Any]]:
    """Each valid row of a register's file as (where, ``model``), as the file is read;
    each bad row goes to ``refusals``, and so does a row whose ``key(row)`` (its
    identity: device id, plate and colour, officer id) an earlier row had."""
    seen: dict[Any, str] = {}
    for where, data in file_rows(path, layout, encoding):
        if isinstance(data, BadRow):
            refusals.add([data.message])
            continue
        try:
            row = model.model_validate(data, context=context)
        except ValidationError as exc:
            refusals.add(_describe(where, exc))
            continue
        identity = key(row)
        if identity in seen:
            name = " ".join(map(str, identity)) if isinstance(identity, tuple) else identity
            refusals.add([f"{where}: {layout.label} {name!r} is also in {seen[identity]}"])
            continue
        seen[identity] = where
        yield where, row


def _validated_devices(path: Path, refusals: Refusals, *, encoding: str | None = None,
                       classes: tuple[str, ...] | None = None, today: date | None = None
                       ) -> Iterator[tuple[str, DeviceRow]]:
    """Each valid device of a registry file with where it is (row-named errors)."""
    context = {"today": today or china_today(),
               "classes": classes or shipped_accuracy_classes()}
    return validated(path, DeviceRow, DEVICES, refusals, key=lambda r: r.device_id,
                     encoding=encoding, context=context)


def validated_rows(path: Path, refusals: Refusals, *, encoding: str | None = None,
                   classes: tuple[str, ...] | None = None, today: date | None = None
                   ) -> Iterator[DeviceRow]:
    """Each valid device of a CSV or YAML registry file, as the file is read; each bad row
    goes to ``refusals`` (a device id seen before too)."""
    for _, row in _validated_devices(path, refusals, encoding=encoding, classes=classes,
                                     today=today):
        yield row


def read_registry(path: Path, encoding: str | None = None, *,
                  classes: tuple[str, ...] | None = None) -> list[DeviceRow]:
    """Read and validate every row of a CSV or YAML registry file; RegistryError listing
    every bad row (up to MAX_ERRORS) if any is wrong."""
    refusals = Refusals()
    devices = list(validated_rows(path, refusals, encoding=encoding, classes=classes))
    if refusals.count:
        raise refusals.error()
    if not devices:
        raise RegistryError(f"{path}: no devices in the file")
    return devices


RECORDS = DeviceRecord.__table__


def is_latest() -> Any:
    """The condition that a device row is its device's latest version (no later one)."""
    later = aliased(DeviceRecord)
    return ~exists().where(later.device_id == DeviceRecord.device_id,
                           later.version > DeviceRecord.version)


def _latest(session: Session, ids: list[str]) -> dict[str, DeviceRecord]:
    """The latest version of each of these devices that has one."""
    rows = session.scalars(select(DeviceRecord).where(DeviceRecord.device_id.in_(ids),
                                                      is_latest()))
    return {r.device_id: r for r in rows}


@dataclass
class _Tally:
    """What an import has done so far."""

    added: int = 0
    changed: int = 0
    unchanged: int = 0


def _versions(session: Session, chunk: list[tuple[str, DeviceRow]], today: date,
              refusals: Refusals, tally: _Tally) -> list[dict[str, Any]]:
    """The new versions a chunk of rows makes: a new device its version 1 (in force from
    its ``effective_from``, else :data:`EARLIEST_DATE`: its own dates decide each check),
    a changed one its next version (from its ``effective_from``, else the import day,
    ``today``); a row saying what the latest version says makes none. A version that would
    start before the latest one goes to ``refusals``, the row named."""
    latest = _latest(session, [row.device_id for _, row in chunk])
    made = []
    for where, row in chunk:
        values = row.model_dump(include=set(CONTENT))
        old = latest.get(row.device_id)
        if old is None:
            tally.added += 1
            made.append({**values, "version": 1,
                         "effective_from": row.effective_from or EARLIEST_DATE})
            continue
        if all(getattr(old, name) == values[name] for name in CONTENT):
            tally.unchanged += 1
            continue
        start = row.effective_from or today
        if start < old.effective_from:
            given = "effective_from" if row.effective_from else "the import day"
            refusals.add([f"{where}: {given} {start} is before {old.effective_from}, from "
                          f"which version {old.version} of device {row.device_id} is in "
                          f"force; a new version starts on or after it"])
            continue
        tally.changed += 1
        made.append({**values, "version": old.version + 1, "effective_from": start})
    return made


def _write_chunk(session: Session, chunk: list[tuple[str, DeviceRow]], versions:
                 list[dict[str, Any]], now: datetime) -> None:
    """Add the chunk's new versions and replace its devices' suspensions."""
    conn = session.connection()
    bulk_insert(conn, RECORDS, [{**v, "updated_at": now} for v in versions])
    ids = [row.device_id for _, row in chunk]
    conn.execute(delete(DeviceSuspension).where(DeviceSuspension.device_id.in_(ids)))
    bulk_insert(conn, DeviceSuspension.__table__,
                [{"device_id": row.device_id, **s.model_dump()} for _, row in chunk
                 for s in row.suspensions])


def import_registry(session: Session, path: Path, actor: str = "import", *,
                    encoding: str | None = None, classes: tuple[str, ...] | None = None,
                    chunk_rows: int = CHUNK_ROWS, today: date | None = None) -> ImportResult:
    """Add the file's new devices and a new version of each changed one, in the session's
    transaction, a chunk at a time as the file is read (the caller commits); ``today``
    (default: today in China) is the import day a changed row without ``effective_from``
    is in force from. A device's suspensions are replaced by the file's. On RegistryError
    some chunks may have been written: the caller rolls back (``with session.begin():``
    does), and nothing is imported."""
    now = datetime.now(UTC)
    day = today or china_today()
    refusals = Refusals()
    tally = _Tally()
    devices: list[str] = []
    chunk: list[tuple[str, DeviceRow]] = []

    def flush() -> None:
        versions = _versions(session, chunk, day, refusals, tally)
        if not refusals.count:
            _write_chunk(session, chunk, versions, now)
        chunk.clear()

    for where, row in _validated_devices(path, refusals, encoding=encoding, classes=classes,
                                         today=day):
        devices.append(row.device_id)
        chunk.append((where, row))
        if len(chunk) >= chunk_rows:
            flush()
    if not devices and not refusals.count:
        raise RegistryError(f"{path}: no devices in the file")
    if chunk:
        flush()
    if refusals.count:
        raise refusals.error()
    audit.append(session, None, "devices_import", f"{path}: {tally.added} added, "
                 f"{tally.changed} changed (a new version each), {tally.unchanged} unchanged",
                 actor=actor, at=now)
    session.flush()
    return ImportResult(tally.added, tally.changed, tuple(devices), tally.unchanged)


def device_on(session: Session, device_id: str, day: date) -> DeviceRecord | None:
    """The device's row in force on ``day`` (CST): its latest version whose
    ``effective_from`` is not after the day; None before its first version or for a
    device not in the registry."""
    return session.scalars(select(DeviceRecord).where(
        DeviceRecord.device_id == device_id, DeviceRecord.effective_from <= day)
        .order_by(DeviceRecord.version.desc()).limit(1)).first()


def device_history(session: Session, device_id: str) -> list[DeviceRecord]:
    """Every version of the device, oldest first (none: not in the registry)."""
    return list(session.scalars(select(DeviceRecord).where(
        DeviceRecord.device_id == device_id).order_by(DeviceRecord.version)))


def count_devices(session: Session) -> int:
    """How many devices the registry holds (each once, whatever its versions)."""
    return session.scalar(select(func.count()).select_from(DeviceRecord)
                          .where(is_latest())) or 0


def device_to_dict(record: DeviceRecord, suspensions: list[DeviceSuspension]
                   ) -> dict[str, Any]:
    """A device's version as plain data, with its suspensions (dates as they are)."""
    data = {c.name: getattr(record, c.name) for c in record.__table__.columns
            if c.name != "id"}
    data["suspensions"] = [{"starts": x.starts, "ends": x.ends, "reason": x.reason}
                           for x in suspensions]
    return data


def list_devices(session: Session, *, limit: int | None = None, offset: int = 0,
                 after: str | None = None
                 ) -> list[tuple[DeviceRecord, list[DeviceSuspension]]]:
    """A page of registered devices (each its latest version) with their suspensions, by
    device id: ``limit`` devices (all when None) from the ``offset``-th, or those after the
    device id ``after``."""
    query = select(DeviceRecord).where(is_latest()).order_by(DeviceRecord.device_id) \
        .offset(offset or None)
    if after is not None:
        query = query.where(DeviceRecord.device_id > after)
    records = session.scalars(query.limit(limit)).all()
    ids = [r.device_id for r in records]
    by_device: dict[str, list[DeviceSuspension]] = {i: [] for i in ids}
    query = select(DeviceSuspension).order_by(DeviceSuspension.starts)
    if limit is not None or after is not None or offset:
        query = query.where(DeviceSuspension.device_id.in_(ids))
    stops = session.scalars(query) if ids else ()
    for s in stops:
        by_device[s.device_id].append(s)
    return [(r, by_device[r.device_id]) for r in records]


def iter_devices(session: Session, page_rows: int = 1000, offset: int = 0
                 ) -> Iterator[tuple[DeviceRecord, list[DeviceSuspension]]]:
    """Every device from the ``offset``-th with its suspensions, by device id, read
    ``page_rows`` at a time (each page after the last id of the one before)."""
    after = None
    while True:
        page = list_devices(session, limit=page_rows, after=after,
                            offset=offset if after is None else 0)
        yield from page
        if len(page) < page_rows:
            return
        after = page[-1][0].device_id
        session.expunge_all()
