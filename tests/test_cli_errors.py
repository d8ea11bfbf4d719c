"""The top level of ``zhichao``: an error it foresees is one line and exit 2; any other
exception is a one-line report naming the file that holds its traceback, exit 1."""

import re
import tempfile
from pathlib import Path

import pytest

import zhichao.cli.center
from zhichao.cli import main
from zhichao.errors import ConfigError


def _fails_with(exc: BaseException):
    def run(args):
        raise exc
    return run


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_an_unexpected_error_is_one_line_and_its_trace_goes_to_a_file(
        capsys, monkeypatch, temp_dir):
    monkeypatch.setattr(zhichao.cli.center, "run_cases_list",
                        _fails_with(RuntimeError("the [red]disk[/] said\nno " + "x" * 500)))
    assert main(["center", "cases", "list"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "unexpected error" in captured.err and "RuntimeError: the [red]disk[/] said no" \
        in captured.err and "Traceback" not in captured.err
    assert len(captured.err) < 400
    (name,) = re.findall(r"full traceback in (\S+)", captured.err)
    trace = Path(name)
    assert trace.parent == temp_dir
    text = trace.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "RuntimeError" in text


def test_debug_prints_the_traceback(capsys, monkeypatch, temp_dir):
    monkeypatch.setattr(zhichao.cli.center, "run_cases_list", _fails_with(KeyError("k")))
    assert main(["--debug", "center", "cases", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'k'" in err
    assert "traceback above" in err.splitlines()[-1]
    assert list(temp_dir.iterdir()) == []


def test_a_foreseen_error_is_one_line_and_exit_2_with_its_words_as_given(
        capsys, monkeypatch):
    monkeypatch.setattr(zhichao.cli.center, "run_cases_list",
                        _fails_with(ConfigError("option 'x' must be [0, 1] (got [/])")))
    assert main(["center", "cases", "list"]) == 2
    err = capsys.readouterr().err
    assert err == "error: option 'x' must be [0, 1] (got [/])\n"
