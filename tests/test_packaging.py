"""The wheel, built offline from this tree: it carries every package and the shipped
configuration, and an installed copy finds its rule tables and example settings."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zhichao", "edge", "center", "drivers", "calibration", "overload", "evidence", "sim")
CONFIG = ("zhichao/config/edge.example.yaml", "zhichao/config/rules/limits.yaml",
          "zhichao/config/rules/axle_codes.yaml", "zhichao/config/rules/axle_limits.yaml",
          "zhichao/config/rules/tolerance.yaml", "zhichao/config/rules/enforcement.yaml",
          "zhichao/config/rules/benchmarks/national.yaml",
          "zhichao/config/rules/benchmarks/zhejiang.yaml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), "-q"],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("zhichao-*.whl")
    return built


def test_the_wheel_holds_every_package_and_the_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    for path in CONFIG:
        assert path in names
    assert "edge/signal/loop.py" in names and "sim/render.py" in names
    assert not any(n.startswith(("tests/", "benchmarks/", ".venv/")) for n in names)


def test_every_source_module_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for package in PACKAGES
               for p in (ROOT / package).rglob("*.py")}
    assert sources and sources <= names


def test_the_wheel_declares_the_zhichao_command(wheel):
    with zipfile.ZipFile(wheel) as zf:
        entry = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        text = zf.read(entry).decode()
    assert "zhichao = zhichao.cli:main" in text


def test_an_installed_wheel_finds_its_config(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    probe = (
        "import zhichao, overload\n"
        "from zhichao.resources import config_dir\n"
        "from edge.settings import load_edge_settings\n"
        "print(zhichao.__file__)\n"
        "print(config_dir())\n"
        "print(overload.load_rules().digest)\n"
        "print(load_edge_settings(config_dir() / 'edge.example.yaml').site.n_channels)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=False,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert run.returncode == 0, run.stderr
    module, config, digest, channels = run.stdout.split()
    assert Path(module).is_relative_to(target)
    assert Path(config) == target / "zhichao" / "config"
    assert len(digest) == 64 and channels == "16"
