"""Who may import whom (design.md): every module of every layer parsed with ``ast``; an
import anywhere in a file (top level, function body, ``importlib.import_module("...")``)
counts. The command line (``zhichao.cli``) imports everything and nothing imports it: not
a layer, and not the kernel (the rest of ``zhichao``)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("drivers", "overload", "evidence", "plates", "edge", "center", "calibration", "sim")
CLI = "zhichao.cli"
FORBIDDEN: dict[str, set[str]] = {
    "drivers": {"overload", "evidence", "center", "edge"},
    "overload": {"edge", "center", "drivers", "evidence", "sim", "calibration"},
    "evidence": {"edge", "center"},
    "plates": {"edge", "center", "drivers", "evidence", "sim", "calibration"},
    "edge": {"center"},
    "center": {"edge"},
    "sim": {"edge", "center", "overload"},
}


def imported_packages(source: str, package: str) -> set[str]:
    """Top-level packages a module's source imports (relative imports stay in ``package``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(package if node.level else (node.module or "").split(".")[0])
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.add(node.args[0].value.split(".")[0])
    return found


def imported_modules(source: str) -> set[str]:
    """Dotted names a module's source imports, ``from a import b`` counted as ``a.b`` too
    (so ``from zhichao import cli`` is seen as ``zhichao.cli``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.add(node.args[0].value)
    return found


def cli_importers(root: Path) -> list[str]:
    """Files of the layers and of the kernel under ``root`` that import the CLI."""
    files = [p for layer in LAYERS for p in sorted((root / layer).rglob("*.py"))]
    files += [p for p in sorted((root / "zhichao").rglob("*.py")) if "cli" not in p.parts]
    return [str(p.relative_to(root)) for p in files
            if any(m == CLI or m.startswith(CLI + ".")
                   for m in imported_modules(p.read_text(encoding="utf-8")))]


def modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def test_every_layer_is_there():
    for layer in LAYERS:
        assert (ROOT / layer / "__init__.py").is_file(), layer
    assert len(modules("edge")) >= 8 and len(modules("sim")) >= 4


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_none_of_its_forbidden_layers(layer):
    bad = {}
    for path in modules(layer):
        hits = imported_packages(path.read_text(encoding="utf-8"), layer) & FORBIDDEN[layer]
        if hits:
            bad[str(path.relative_to(ROOT))] = sorted(hits)
    assert bad == {}


def test_the_checker_sees_every_form_of_import():
    source = (
        "import center.app\n"
        "from edge.signal import loop\n"
        "from . import sibling\n"
        "def late():\n"
        "    import overload\n"
        "    importlib.import_module('evidence.packet')\n"
        "    return __import__('sim')\n"
    )
    assert imported_packages(source, "drivers") == {"center", "edge", "drivers", "overload",
                                                    "evidence", "sim"}


def test_the_checker_reads_the_real_files():
    source = (ROOT / "sim" / "render.py").read_text(encoding="utf-8")
    assert {"drivers", "sim", "numpy"} <= imported_packages(source, "sim")
    source = (ROOT / "edge" / "weighing.py").read_text(encoding="utf-8")
    assert {"overload", "edge"} <= imported_packages(source, "edge")


def test_no_layer_and_not_the_kernel_imports_the_cli():
    assert cli_importers(ROOT) == []


@pytest.mark.parametrize("line", ["from zhichao.cli import main", "import zhichao.cli.edge",
                                  "from zhichao import cli",
                                  "importlib.import_module('zhichao.cli.demo')"])
def test_the_cli_check_fails_when_a_layer_imports_the_cli(tmp_path, line):
    for layer in (*LAYERS, "zhichao"):
        (tmp_path / layer).mkdir()
    (tmp_path / "edge" / "unit.py").write_text("import numpy\n" + line + "\n")
    (tmp_path / "zhichao" / "cli").mkdir()
    (tmp_path / "zhichao" / "cli" / "edge.py").write_text("import zhichao.cli\n")
    assert cli_importers(tmp_path) == ["edge/unit.py"]
