"""Load YAML into pydantic models, with errors that name the file, the key and the value.

Every settings file and rule table goes through :func:`load_model`, so a typo or a wrong
value stops start-up with one readable line instead of a traceback, in Klipper's form:
"config/edge.yaml: option 'signal.lo_counts' must be greater than 0 (got -5)".
"""

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from zhichao.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path, error: type[Exception] = ConfigError) -> Any:
    """Parse a YAML file, raising ``error`` that names the file and the line on failure."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
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
        if err["type"] == "extra_forbidden":
            msg = f"is not a known option (a typo?) (got {err['input']!r})"
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


def load_model(
    path: Path, model: type[M], error: type[Exception] = ConfigError
) -> M:
    """Read ``path`` as YAML and validate it as ``model``."""
    return validate(model, read_yaml(path, error), str(path), error)
