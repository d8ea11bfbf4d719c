"""Cells safe to open in a spreadsheet: text that a spreadsheet would take for a formula
gets a single quote before it, so an exported plate or name never runs as a formula. Every
CSV the center writes (the Art. 44 export, the letter batch's manifest) goes through here.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
"""A text cell beginning with one of these is taken by a spreadsheet as a formula (OWASP,
CSV injection; the last four are the full-width forms)."""


def csv_cell(value: object) -> object:
    """One CSV cell: a number as it is, null as an empty cell, text neutralised when a
    spreadsheet would take it as a formula (a single quote before it).

    Examples
    --------
    >>> [csv_cell(v) for v in ("=1+2", "-x", "浙A12345", -120.5, None)]
    ["'=1+2", "'-x", '浙A12345', -120.5, '']
    """
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
