"""Load YAML into pydantic models, with errors that name the file, the key and the value.

Every settings file and rule table goes through :func:`load_model`, so a typo or a wrong
value stops start-up with one readable line instead of a traceback, in Klipper's form:
"config/edge.yaml: option 'signal.lo_counts' must be greater than 0 (got -5)".

A file is read as Excel and Notepad on a Chinese desktop save it: UTF-8 with or without a
BOM, UTF-16 (with its BOM, or told by its zero bytes), else GBK/GB18030 (:func:`decode`).
Numbers must be finite in every section (:func:`non_finite`), and the models bound theirs
with the constrained types here (:func:`number`, :func:`count`), whose messages say why;
ZeroMQ endpoints are parsed at load (:data:`ConnectEndpoint`, :data:`BindEndpoint`).
"""

import codecs
import math
import re
import reprlib
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from zhichao.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
"""Byte order marks and the codec that reads past them; UTF-32's first, as its little-endian
mark begins with UTF-16's."""


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 told by its zero bytes (a settings file is mostly ASCII, whose every other
    byte is zero in UTF-16): the codec, or None for a file that is not UTF-16."""
    if len(data) < 2 or len(data) % 2 or b"\0" not in data:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    return "utf-16-le" if odd > even else "utf-16-be"


def _where(data: bytes, at: int) -> str:
    """Line and column (in bytes, from 1) of byte ``at``."""
    line, line_start = data.count(b"\n", 0, at) + 1, data.rfind(b"\n", 0, at) + 1
    return f"line {line} column {at - line_start + 1}"


def decode(data: bytes, source: str, encoding: str | None = None,
           error: type[Exception] = ConfigError) -> str:
    r"""The text of a settings file: in ``encoding`` if given; else as its BOM says; else
    UTF-16 told by its zero bytes; else UTF-8 if it is valid UTF-8; else GB18030 (which
    reads GBK and GB2312 too). A file none of them reads raises ``error`` naming the line,
    column and byte where the decoding that went furthest stopped.

    Examples
    --------
    >>> decode("限高: 4.0".encode("gbk"), "x.yaml")
    '限高: 4.0'
    >>> decode(codecs.BOM_UTF16_LE + "限高: 4.0".encode("utf-16-le"), "x.yaml")
    '限高: 4.0'
    >>> decode(b"a: 1\nb: \xff\n", "x.yaml")
    Traceback (most recent call last):
    ...
    zhichao.errors.ConfigError: x.yaml: line 2 column 4: byte 0xff is neither UTF-8 nor ...
    """
    if encoding is not None:
        tries = [encoding]
    else:
        tries = [codec for bom, codec in BOMS if data.startswith(bom)][:1]
        if not tries:
            utf16 = _utf16_without_bom(data)
            tries = [utf16] if utf16 else ["utf-8", "gb18030"]
    furthest: UnicodeDecodeError | None = None
    for codec in tries:
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            if furthest is None or exc.start >= furthest.start:
                furthest = exc
        except LookupError:
            raise error(f"{source}: unknown encoding {codec!r}") from None
    assert furthest is not None
    byte = data[furthest.start:furthest.start + 1].hex()
    if encoding is not None:
        what = f"not {encoding}"
    elif tries[0] in ("utf-8", "gb18030"):
        what = "neither UTF-8 nor GB18030 (nor UTF-16 with a BOM)"
    else:
        what = f"not {tries[0].upper().replace('-SIG', '')} as its start says"
    raise error(f"{source}: {_where(data, furthest.start)}: byte 0x{byte} is {what}; "
                "save the file as UTF-8")


def read_yaml(path: Path, error: type[Exception] = ConfigError,
              encoding: str | None = None) -> Any:
    """Parse a YAML file, raising ``error`` that names the file and the line on failure.
    The encoding is found by :func:`decode` unless ``encoding`` names it."""
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise error(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    text = decode(data, str(path), encoding, error)
    try:
        return yaml.safe_load(text)
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise error(f"{path}: not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None


def describe_validation_error(source: str, exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: which key, what was wrong, and the value received."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":  # reprlib: an alias may repeat a list 9^9 times
            shown = reprlib.repr(err["input"]) if isinstance(err["input"], dict | list) \
                else repr(err["input"])
            msg = f"is not a known option (a typo?) (got {shown})"
        elif err["type"] == "missing":
            msg = "is required but missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        else:
            msg = msg.replace("Input should be", "must be").replace("Input", "value")
            msg = f"{msg[0].lower()}{msg[1:]}"
            if "input" in err and not isinstance(err["input"], dict | list):
                msg += f" (got {err['input']!r})"
        lines.append(f"{source}: option '{loc}' {msg}" if loc else f"{source}: {msg}")
    return "\n".join(lines)


def validate(
    model: type[M], data: Any, source: str, error: type[Exception] = ConfigError, prefix: str = ""
) -> M:
    """Validate ``data`` against ``model``; on failure raise ``error`` naming ``source``."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise error(describe_validation_error(source, exc, prefix)) from None


def non_finite(data: Any, prefix: str = "") -> list[str]:
    r"""Where ``data`` (parsed YAML) holds a number that is not finite (``.inf``, ``.nan``,
    or a text such as ``1e400`` that reads as one): the options, dotted.

    Examples
    --------
    >>> non_finite({"a": 1.0, "b": {"c": [2.0, float("inf")]}, "d": "1e999", "e": "x"})
    ['b.c.1', 'd']
    """
    return [where for where, _ in _non_finite(data, prefix)]


def _non_finite(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """:func:`non_finite` with the values. Each list and map is looked at once, without
    recursion: YAML's aliases can repeat one billions of times or put it inside itself,
    and a document can nest deeper than Python's stack."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    todo: list[tuple[str, Any]] = [(prefix, data)]
    while todo:
        where, node = todo.pop()
        if isinstance(node, dict | list):
            if id(node) not in seen:
                seen.add(id(node))
                pairs = list(node.items() if isinstance(node, dict) else enumerate(node))
                todo.extend((f"{where}{key}.", value) for key, value in reversed(pairs))
        elif isinstance(node, float | str):
            try:
                number = float(node)
            except ValueError:
                continue
            if not math.isfinite(number):
                found.append((where.removesuffix("."), node))
    return found


def load_model(
    path: Path, model: type[M], error: type[Exception] = ConfigError,
    encoding: str | None = None
) -> M:
    """Read ``path`` as YAML (in ``encoding``, else as :func:`decode` finds it) and validate
    it as ``model``. A number that is not finite is refused in any section (the models
    need not each say so)."""
    data = read_yaml(path, error, encoding)
    lines: list[str] = []
    said: set[str] = set()
    try:
        result = model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        lines = describe_validation_error(str(path), exc).splitlines()
        said = {".".join(map(str, err["loc"])) for err in exc.errors()}
    lines += [f"{path}: option '{where}' must be a finite number (got {value!r})"
              for where, value in _non_finite(data)
              if not any(where == loc or where.startswith(f"{loc}.") for loc in said)]
    if lines:
        raise error("\n".join(lines))
    return result


# Constrained types -------------------------------------------------------------------


def _within(value: float, *, low: float, low_included: bool, high: float, unit: str,
            why: str) -> float:
    """``value`` if finite, above ``low`` (or at it, when ``low_included``) and at most
    ``high``; else ValueError saying which bound and, for the upper one, ``why``."""
    if not math.isfinite(value) or value > high:
        finite = "a finite number, " if not math.isfinite(value) else ""
        raise ValueError(f"must be {finite}at most {high:g}{unit}: {why} (got {value!r})")
    if value < low or (value == low and not low_included):
        than = "greater than or equal to" if low_included else "greater than"
        raise ValueError(f"must be {than} {low:g} (got {value!r})")
    return value


def number(at_most: float, why: str, *, unit: str = "", above: float | None = 0.0,
           at_least: float | None = None) -> Any:
    """A finite float above ``above`` (or at least ``at_least``) and at most ``at_most``;
    the message of a value too large, infinite or NaN says ``why`` that is the bound.
    Used as a field's annotation, with the default and description in its ``Field``.

    Examples
    --------
    >>> from pydantic import TypeAdapter
    >>> seconds = TypeAdapter(number(3600, "an hour", unit=" s"))
    >>> seconds.validate_python(2.5)
    2.5
    >>> seconds.validate_python(float("inf"))
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for function-after[...]
      Value error, must be a finite number, at most 3600 s: an hour (got inf) ...
    """
    low, included = (at_least, True) if at_least is not None else (above, False)
    return Annotated[float, Field(allow_inf_nan=True),  # refused by _within, saying why
                     AfterValidator(partial(_within, low=low, low_included=included,
                                            high=at_most, unit=unit, why=why))]


def count(at_most: int, why: str, *, at_least: int = 1, unit: str = "") -> Any:
    """An integer from ``at_least`` to ``at_most``, the message of one too large saying
    ``why``."""
    return Annotated[int, AfterValidator(partial(_within, low=at_least, low_included=True,
                                                 high=at_most, unit=unit, why=why))]


ENDPOINT_FORMS = "tcp://HOST:PORT or ipc://PATH"
_TCP = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\*|\d+)$")


def endpoint(text: str, bind: bool = False) -> str:
    """A ZeroMQ endpoint checked as ZeroMQ will use it: ``tcp://HOST:PORT`` (a port from
    1 to 65535; to bind, HOST may be ``*``, an address or an interface and PORT ``*``) or
    ``ipc://PATH``; ValueError saying what is allowed otherwise.

    Examples
    --------
    >>> endpoint("tcp://10.0.0.1:5760")
    'tcp://10.0.0.1:5760'
    >>> endpoint("htp://x")
    Traceback (most recent call last):
    ...
    ValueError: must be a ZeroMQ endpoint, tcp://HOST:PORT or ipc://PATH (got 'htp://x')
    """
    forms = ENDPOINT_FORMS if not bind else "tcp://HOST:PORT (HOST or PORT may be *) or ipc://PATH"
    if text.startswith("ipc://") and len(text) > len("ipc://"):
        return text
    match = _TCP.match(text)
    if match is None:
        raise ValueError(f"must be a ZeroMQ endpoint, {forms} (got {text!r})")
    host, port = match.groups()
    if (bind and port == "*") or (port.isdigit() and 1 <= int(port) <= 65535
                                  and (bind or host != "*")):
        return text
    raise ValueError(f"must be a ZeroMQ endpoint, {forms}, with PORT from 1 to 65535 "
                     f"(got {text!r})")


ConnectEndpoint = Annotated[str, AfterValidator(endpoint)]
"""An endpoint to connect to: ``tcp://HOST:PORT`` or ``ipc://PATH``."""
BindEndpoint = Annotated[str, AfterValidator(partial(endpoint, bind=True))]
"""An endpoint to bind: as :data:`ConnectEndpoint`, HOST or PORT may also be ``*``."""
