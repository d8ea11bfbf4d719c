"""The plate grammar of GA 36: which texts a number plate can carry, as data.

``config/rules/plates.yaml`` lists named alphabets and plate templates, each template a
sequence of alphabet names (one per character) with the plate colours it comes in. The
reader at the roadside decodes only what a template allows; the center checks a plate
text with :meth:`PlateGrammar.match`.

Examples
--------
>>> grammar = load_plate_grammar()
>>> grammar.match("皖A12345").id
'ordinary'
>>> grammar.match("粤B1234挂").id, grammar.match("京AD12345").id
('trailer', 'new-energy-small')
>>> grammar.match("皖AI2345") is None       # no I on plates
True
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from overload.errors import RuleError
from overload.tables import Frozen, RuleId, Source, Sourced
from zhichao.resources import rules_dir
from zhichao.settings import load_model

PlateColour = Literal["blue", "yellow", "green", "yellow_green", "white", "black"]
PLATE_COLOURS: tuple[PlateColour, ...] = ("blue", "yellow", "green", "yellow_green", "white",
                                          "black")
PLATES_FILE = "plates.yaml"


class Template(Sourced):
    """One kind of plate: an alphabet name per character, and the colours it comes in."""

    id: RuleId
    description: str
    positions: list[str] = Field(min_length=2)
    colours: list[PlateColour] = Field(min_length=1)
    double_row: bool = False


class PlateTable(Frozen):
    """``plates.yaml``: the alphabets and the templates."""

    title: str
    source: Source
    alphabets: dict[str, str]
    templates: list[Template] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "PlateTable":
        for name, chars in self.alphabets.items():
            if not chars or len(set(chars)) != len(chars):
                raise ValueError(f"alphabet {name!r} must be non-empty characters without "
                                 f"repeats (got {chars!r})")
        seen: set[str] = set()
        for template in self.templates:
            if template.id in seen:
                raise ValueError(f"template id {template.id!r} appears twice")
            seen.add(template.id)
            for name in template.positions:
                if name not in self.alphabets:
                    raise ValueError(f"template {template.id!r} uses unknown alphabet "
                                     f"{name!r} (known: {', '.join(self.alphabets)})")
        return self


@dataclass(frozen=True)
class PlateTemplate:
    """A template resolved to its characters: ``allowed[i]`` holds position ``i``'s."""

    id: str
    description: str
    allowed: tuple[str, ...]
    colours: tuple[PlateColour, ...]
    double_row: bool
    source: str

    def __len__(self) -> int:
        return len(self.allowed)

    def accepts(self, text: str) -> bool:
        """Whether ``text`` fits this template character by character."""
        return len(text) == len(self.allowed) and all(
            ch in chars for ch, chars in zip(text, self.allowed, strict=True))


@dataclass(frozen=True)
class PlateGrammar:
    """All plate templates in force."""

    templates: tuple[PlateTemplate, ...]
    provinces: str

    def match(self, text: str) -> PlateTemplate | None:
        """The first template ``text`` fits, or None: a text no template fits is no plate."""
        return next((t for t in self.templates if t.accepts(text)), None)

    def is_plate(self, text: str) -> bool:
        """Whether some template accepts ``text``."""
        return self.match(text) is not None

    @property
    def characters(self) -> str:
        """Every character any template allows anywhere (sorted)."""
        return "".join(sorted({c for t in self.templates for chars in t.allowed for c in chars}))


def load_plate_grammar(folder: Path | None = None) -> PlateGrammar:
    """Read ``plates.yaml`` of ``folder`` (default: the shipped rules) into a grammar.

    Raises RuleError naming the file, the option and the value of the first problem.
    """
    root = Path(folder) if folder is not None else rules_dir()
    table = load_model(root / PLATES_FILE, PlateTable, RuleError)
    templates = tuple(
        PlateTemplate(id=t.id, description=t.description,
                      allowed=tuple(table.alphabets[name] for name in t.positions),
                      colours=tuple(t.colours), double_row=t.double_row,
                      source=t.source.cite())
        for t in table.templates)
    province = table.alphabets.get("province")
    if province is None:
        raise RuleError(f"{root / PLATES_FILE}: alphabets: needs 'province' (the "
                        "abbreviations that open a plate)")
    return PlateGrammar(templates=templates, provinces=province)
