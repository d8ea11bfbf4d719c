"""README documents every command and option of the ``zhichao`` command line.

The options are read from the real parser, so a new option without documentation fails
here (Datasette's tests/test_docs.py does the same for its settings and commands).
"""

import argparse
from pathlib import Path

import pytest

from zhichao.cli import COMMANDS, build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name."""
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command):
    assert f"zhichao {command}" in README


@pytest.mark.parametrize(("command", "option"), [
    (name, opt) for name, sub in subparsers().items() for action in sub._actions
    for opt in action.option_strings if opt.startswith("--") and opt != "--help"])
def test_every_option_is_in_the_readme(command, option):
    assert option in README, f"zhichao {command} {option} is not documented in README.md"
