"""A rule as applied to one case: its id, its source and what it did there."""

from dataclasses import dataclass

from overload.tables import Rule, Source


@dataclass(frozen=True)
class AppliedRule:
    """One rule that produced (part of) a result, with its source.

    Attributes
    ----------
    id : str
        The rule id in the tables.
    source : Source
        Act, article, clause.
    detail : str
        What the rule did in this case, in plain words.
    verify : bool
        True when the table marks the value as not confirmed against the official text.
    """

    id: str
    source: Source
    detail: str
    verify: bool = False

    @classmethod
    def of(cls, rule: Rule, detail: str) -> "AppliedRule":
        """Cite ``rule`` with the given detail."""
        return cls(rule.id, rule.source, detail, rule.verify)

    def to_dict(self) -> dict:
        """Plain data for JSON: id, source (act, article, clause), cite, detail, verify."""
        return {
            "id": self.id,
            "source": self.source.model_dump(),
            "cite": self.source.cite(),
            "detail": self.detail,
            "verify": self.verify,
        }


def fmt_num(value: float) -> str:
    """A number with thin grouping, no needless decimals: 49000 → '49 000', 1020.5 → '1 020.5'."""
    if float(value).is_integer():
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:,.2f}".rstrip("0").rstrip(".").replace(",", " ")
