"""Folds of a development set: every setting is chosen on some folds, reported on the others.

A file's fold is fixed by its name alone (a hash, not the order of a listing), so a file
added later never moves the others, and a helper, a benchmark and a training script agree
on which files are held out.
"""

import hashlib

FOLDS = 5
"""Default number of folds."""


def fold_of(name: str, folds: int = FOLDS) -> int:
    """The fold (0 … folds − 1) of a file, from its name without the folder."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % folds


def held_out(names: list[str], fold: int, folds: int = FOLDS) -> tuple[list[str], list[str]]:
    """The names split into (the other folds, this fold)."""
    rest = [n for n in names if fold_of(n, folds) != fold]
    return rest, [n for n in names if fold_of(n, folds) == fold]
