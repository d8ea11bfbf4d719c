"""Shared fixtures. Keep each one small; several layers add theirs here."""

import shutil
from pathlib import Path

import pytest

from overload import RuleBook, load_rules
from zhichao.resources import rules_dir


@pytest.fixture(scope="session")
def rules() -> RuleBook:
    """The shipped rule tables, loaded once."""
    return load_rules()


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped rules folder, for tests that change one value."""
    folder = tmp_path / "rules"
    shutil.copytree(rules_dir(), folder)
    return folder
