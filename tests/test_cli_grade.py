"""``zhichao grade``: in-process through the real parser, and once as a real process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zhichao.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich wraps at 80 columns when not on a terminal; a wide one keeps each message whole."""
    monkeypatch.setenv("COLUMNS", "250")


def run_json(capsys, *args):
    assert main(["grade", *args, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def test_json_157_at_55400(capsys):
    data = run_json(capsys, "--axles", "157", "--gross-kg", "55400")
    assert (data["axle_code"], data["limit_kg"], data["excess_kg"]) == ("157", 49000, 6400)
    assert (data["action"], data["fine_yuan"], data["rounding"]) == ("fine", 3000, "floor")
    assert [r["id"] for r in data["rules"]] == [
        "axle-code.vehicle-map",
        "limit.combination.6",
        "none",
        "national.mass.fine",
    ]
    assert all(r["source"]["act"] and r["source"]["article"] for r in data["rules"])


def test_json_warning_has_null_fine(capsys):
    data = run_json(capsys, "--axles", "157", "--gross-kg", "49500")
    assert (data["action"], data["fine_yuan"]) == ("warning", None)


def test_json_options_reach_the_grade(capsys):
    data = run_json(
        capsys,
        "--axles",
        "12",
        "--gross-kg",
        "25000",
        "--benchmark",
        "zhejiang",
        "--tolerance",
        "mpe",
        "--accuracy-class",
        "5",
        "--rounding",
        "pro_rata",
    )
    assert (data["benchmark"], data["tolerance_policy"], data["accuracy_class"]) == (
        "zhejiang",
        "mpe",
        "5",
    )
    # 25 000 − 1 250 tolerance = 23 750; 5 750 over; 2 150 kg above 20 % → 2.15 × 300.
    assert (data["tolerance_kg"], data["excess_kg"], data["fine_yuan"]) == (1250, 5750, 645)


def test_json_licence_mass_and_dimensions(capsys):
    data = run_json(
        capsys,
        "--axles",
        "12",
        "--gross-kg",
        "18000",
        "--licence-mass-kg",
        "16000",
        "--height-m",
        "4.3",
    )
    assert data["limit_kg"] == 16000
    assert (data["fine_yuan"], data["fine_min_yuan"], data["fine_max_yuan"]) == (None, 1200, 2000)
    assert [d["quantity"] for d in data["dimensions"]] == ["height"]


def test_rules_folder_option(capsys, rules_copy):
    path = rules_copy / "benchmarks" / "national.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("rate_yuan: 500", "rate_yuan: 700"),
        encoding="utf-8",
    )
    data = run_json(capsys, "--axles", "157", "--gross-kg", "55400", "--rules", str(rules_copy))
    assert data["fine_yuan"] == 6 * 700


def test_text_explains_limit_excess_fine_and_sources(capsys):
    assert main(["grade", "--axles", "157", "--gross-kg", "55400"]) == 0
    out = capsys.readouterr().out
    for words in (
        "limit 49 000 kg",
        "graded excess 6 400 kg",
        "fine 3 000 yuan",
        "national.mass.fine",
        "第四十三条",
        "limit.combination.6",
        "rules applied",
    ):
        assert words in out


def test_text_marks_inferred_codes_and_assumptions(capsys):
    assert main(["grade", "--axles", "127", "--gross-kg", "45000"]) == 0
    out = capsys.readouterr().out
    assert "assumed:" in out and "most favourable" in out
    assert main(["grade", "--axles", "1175", "--gross-kg", "45000"]) == 0
    assert "inferred" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--axles", "1x2", "--gross-kg", "5000"],
            "error: unknown axle code '1x2': digit 'x' at position 2 is not an axle-group digit",
        ),
        (
            ["--axles", "157", "--gross-kg", "heavy"],
            "error: option --gross-kg must be a number 0 or more (got 'heavy')",
        ),
        (
            ["--axles", "157", "--gross-kg", "-100"],
            "error: option --gross-kg must be a number 0 or more (got '-100')",
        ),
        (
            ["--axles", "157", "--gross-kg", "5000", "--benchmark", "hubei"],
            "error: unknown benchmark 'hubei' (known: national, zhejiang)",
        ),
        (
            ["--axles", "157", "--gross-kg", "5000", "--tolerance", "mpe"],
            "error: tolerance policy 'mpe' needs an accuracy class",
        ),
        (
            ["--axles", "157", "--gross-kg", "5000", "--rules", "/nonexistent/rules"],
            "error: /nonexistent/rules/limits.yaml: rule table is missing",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    assert main(["grade", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1
    assert "Traceback" not in captured.err


def _zhichao(*args):
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "zhichao.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def test_real_process_json():
    proc = _zhichao("grade", "--axles", "157", "--gross-kg", "55400", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["axle_code"], data["limit_kg"], data["excess_kg"]) == ("157", 49000, 6400)
    assert (data["action"], data["fine_yuan"]) == ("fine", 3000)
    assert {"id", "source"} <= set(data["rules"][0])


def test_real_process_unknown_code():
    proc = _zhichao("grade", "--axles", "1x2", "--gross-kg", "55400", "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: unknown axle code '1x2'")
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr
