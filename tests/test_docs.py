"""README documents every command and option of the ``zhichao`` command line.

The options are read from the real parser, so a new option without documentation fails
here (Datasette's tests/test_docs.py does the same for its settings and commands). Every
benchmark that ``make bench`` runs has its row in README's one table of figures, every
benchmark of that table its section in docs/performance.md, and the code paths README and
docs/ name exist.
"""

import argparse
import re
from pathlib import Path

import pytest

from zhichao.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = sorted((ROOT / "docs").glob("*.md"))
PERFORMANCE = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
FIGURES_HEADER = "| what | figure | command |"
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
BENCH_SCRIPT = re.compile(r"benchmarks/([a-z_]+\.py)")
CODE_PATH = re.compile(r"`([a-z_]+(?:/[A-Za-z0-9_.-]+)*(?:\.py|/))`")


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


def figures_table() -> list[str]:
    """The rows of README's table of figures (the one table with that header)."""
    lines = README.splitlines()
    assert lines.count(FIGURES_HEADER) == 1, "README needs exactly one table of figures"
    start = lines.index(FIGURES_HEADER) + 2  # past the header and its rule
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def figures_scripts() -> list[str]:
    """The benchmark script of each row of the table of figures, in order."""
    scripts = []
    for row in figures_table():
        named = BENCH_SCRIPT.findall(row.split("|")[-2])
        assert len(named) == 1, f"a row of figures names one benchmark command: {row}"
        scripts.append(named[0])
    return scripts


def test_figures_name_existing_benchmarks_once():
    scripts = figures_scripts()
    assert len(scripts) == len(set(scripts)), f"a benchmark has two rows: {scripts}"
    missing = [s for s in scripts if not (ROOT / "benchmarks" / s).exists()]
    assert not missing, f"README's figures name benchmarks that do not exist: {missing}"


@pytest.mark.parametrize("script", sorted(set(BENCH_SCRIPT.findall(
    MAKEFILE.split("\nbench:", 1)[1].split("\n\n", 1)[0]))))
def test_every_bench_target_has_figures(script):
    assert script in figures_scripts(), (
        f"make bench runs benchmarks/{script}, which has no row in README's figures")


def test_every_benchmark_of_the_figures_is_in_the_performance_notes():
    missing = [s for s in figures_scripts() if f"`benchmarks/{s}`" not in PERFORMANCE]
    assert not missing, f"not described in docs/performance.md: {missing}"


def test_readme_links_the_performance_notes():
    assert "(docs/performance.md)" in README


@pytest.mark.parametrize("doc", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_named_code_paths_exist(doc):
    """A file or folder named in backticks whose first part is a folder of the repository
    exists (a path left behind by a move fails here)."""
    top = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    text = doc.read_text(encoding="utf-8")
    named = {m for m in CODE_PATH.findall(text) if m.split("/")[0] in top}
    missing = sorted(m for m in named if not (ROOT / m).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"
    docs_named = set(re.findall(r"docs/[a-z_-]+\.md", text))
    assert all((ROOT / d).exists() for d in docs_named), f"{doc.name}: {sorted(docs_named)}"
