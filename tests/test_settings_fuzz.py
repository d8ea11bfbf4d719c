"""Settings files of any content (issue 17: every parser of outside input fuzzed).

:func:`zhichao.settings.read_yaml` and :func:`~zhichao.settings.load_model`, the edge's
:func:`edge.settings.load_edge_settings` (its device sections included) and the center's
:func:`center.settings.load_center_settings` give settings or a ConfigError whose message
names the file, never another exception, and in bounded time: for any bytes, any YAML
document (nested dicts, lists and scalars, the options' own names among the keys), the
example files with options renamed, deleted or given infinite, huge, negative or wrongly
typed values, and the documents YAML makes small and Python large (nesting, aliases)."""

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from center.settings import CenterSettings, load_center_settings
from edge.settings import EdgeSettings, load_edge_settings
from zhichao.errors import ConfigError
from zhichao.settings import load_model, read_yaml

CONFIG = Path(__file__).resolve().parent.parent / "config"
DEVICES = {
    "digitiser": {"kind": "serial", "protocol": "digitiser", "port": "/dev/ttyUSB0",
                  "baudrate": 921600},
    "controller": {"kind": "modbus", "url": "tcp://192.0.2.10:502",
                   "register_map": "devices/wim_modbus.example.yaml"},
    "gps": {"kind": "serial", "protocol": "nmea", "port": "/dev/ttyS1", "baudrate": 9600},
    "front": {"kind": "camera", "url": "rtsp://192.0.2.20/stream1", "offset_s": 0.0,
              "lane": 1, "role": "front", "distance_m": 0.0, "roi": [0, 0, 1920, 1080],
              "jpeg_quality": 90, "max_dt_s": 0.1},
}
"""The device sections the edge example lists in its comments."""


def _edge_with_devices() -> dict:
    doc = yaml.safe_load((CONFIG / "edge.example.yaml").read_text(encoding="utf-8"))
    doc["devices"] = copy.deepcopy(DEVICES)
    return doc


DOCS: dict[str, Any] = {
    "center": yaml.safe_load((CONFIG / "center.example.yaml").read_text(encoding="utf-8")),
    "edge": _edge_with_devices(),
}
TEXTS = {"center": (CONFIG / "center.example.yaml").read_bytes(),
         "edge": (CONFIG / "edge.example.yaml").read_bytes(),
         "edge+devices": yaml.safe_dump(DOCS["edge"], allow_unicode=True,
                                        sort_keys=False).encode("utf-8")}
LOADERS: dict[str, Callable[[Path], BaseModel]] = {
    "center": load_center_settings, "edge": load_edge_settings,
    "model": lambda path: load_model(path, CenterSettings)}
MODELS = {"center": CenterSettings, "edge": EdgeSettings, "model": CenterSettings}
MAX_BYTES = 4000
"""Inputs stay this small: a settings file's worth, so every example is quick."""

BOUNDED = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])
LONG = settings(BOUNDED, max_examples=3000)


def _keys(node: Any) -> set:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


OPTIONS = sorted(str(k) for k in _keys(DOCS["center"]) | _keys(DOCS["edge"]))
"""Every option name of both examples, so that drawn documents reach the models' checks."""

BAD_VALUES = st.sampled_from([
    float("inf"), float("-inf"), float("nan"), 1e308, -1e308, 10**30, 2**63, -(2**63) - 1,
    -1, -0.5, 0, "x", "", "1e999", "-1e999", "nan", "\x00", "tcp://x", "ipc://", "htp://x",
    "mysql://zc:pw@db/x", [], [1, 2], [None], {}, {"a": 1}, {"kind": "serial"}, None, True,
    "💥" * 50])
"""Values an option should never take: infinite, huge, negative, of the wrong type."""
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
           | st.floats() | st.text(max_size=20) | BAD_VALUES)
KEYS = st.sampled_from(OPTIONS) | st.text(max_size=12) | st.integers(-3, 3) | st.none() \
    | st.booleans() | st.sampled_from(["a.b", "devices.x", "1", ""])
DOC = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                   | st.dictionaries(KEYS, children, max_size=5), max_leaves=30)
"""Any YAML document of dicts, lists and scalars."""


def dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")


def places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) of a document."""
    if isinstance(node, dict):
        return [(node, k) for k in node] + [p for v in node.values() for p in places(v)]
    if isinstance(node, list):
        return [(node, i) for i in range(len(node))] + [p for v in node for p in places(v)]
    return []


@st.composite
def mutated_doc(draw: st.DrawFn, name: str) -> bytes:
    """An example with one to three options replaced by a bad value or any document,
    renamed, or deleted."""
    doc = copy.deepcopy(DOCS[name])
    for _ in range(draw(st.integers(1, 3))):
        spots = places(doc)
        if not spots:
            break
        parent, key = draw(st.sampled_from(spots))
        how = draw(st.sampled_from(["value", "value", "key", "delete"]))
        if how == "value":
            parent[key] = copy.deepcopy(draw(BAD_VALUES | DOC))  # no constant changed
        elif how == "key" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(key)
        else:
            del parent[key]
    return dump(doc)


def spliced(original: bytes) -> st.SearchStrategy[bytes]:
    """The file with a run of its bytes replaced by others, or cut short."""
    return st.tuples(st.integers(0, len(original)), st.integers(0, 40),
                     st.binary(max_size=40)).map(
        lambda t: original[:t[0]] + t[2] + original[t[0] + t[1]:])


@pytest.fixture
def folder(tmp_path):
    """A folder for the settings file, holding the register map the edge example names."""
    (tmp_path / "devices").mkdir()
    shutil.copy(CONFIG / "devices" / "wim_modbus.example.yaml", tmp_path / "devices")
    return tmp_path


def load_or_refuse(folder: Path, loader: str, data: bytes) -> None:
    """Settings, or a ConfigError naming the file; nothing else."""
    path = folder / "settings.yaml"
    path.write_bytes(data)
    try:
        result = LOADERS[loader](path)
    except ConfigError as exc:
        message = str(exc)
        # a device's register map that cannot be read is named instead of the settings
        assert message.startswith((str(path), str(folder))), message
        assert "Traceback" not in message
    else:
        assert isinstance(result, MODELS[loader])
    try:
        read_yaml(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


LOADER_NAMES = sorted(LOADERS)


@pytest.mark.parametrize("loader", LOADER_NAMES)
@BOUNDED
@given(data=st.binary(max_size=MAX_BYTES))
def test_any_bytes_load_or_raise_config_error(folder, loader, data):
    load_or_refuse(folder, loader, data)


@pytest.mark.parametrize("loader", LOADER_NAMES)
@BOUNDED
@given(doc=DOC | st.dictionaries(st.sampled_from(sorted(DOCS["edge"]) + sorted(
    DOCS["center"])), DOC, max_size=6))
def test_any_yaml_document_loads_or_raises_config_error(folder, loader, doc):
    load_or_refuse(folder, loader, dump(doc)[:MAX_BYTES])


@pytest.mark.parametrize("name", sorted(DOCS))
@BOUNDED
@given(data=st.data())
def test_an_example_with_options_renamed_deleted_or_badly_valued_loads_or_is_refused(
        folder, name, data):
    load_or_refuse(folder, name, data.draw(mutated_doc(name)))


@pytest.mark.parametrize("name", sorted(TEXTS))
@BOUNDED
@given(data=st.data())
def test_an_example_file_with_any_bytes_changed_loads_or_is_refused(folder, name, data):
    text = TEXTS[name]
    encoded = data.draw(st.sampled_from(["utf-8", "utf-16", "gb18030"]))
    if encoded != "utf-8":
        text = text.decode("utf-8").encode(encoded)
    load_or_refuse(folder, name.split("+")[0], data.draw(spliced(text)))


# What YAML makes small and Python large ---------------------------------------------------

BILLION = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi",
                                                               strict=True))
"""Nine lists of nine aliases of the previous: a 9^9-element document in 300 bytes."""
DEEP = 1000


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loader", ["center", "edge"])
@pytest.mark.parametrize(("label", "text"), [
    ("nested lists", "[" * DEEP + "]" * DEEP),
    ("nested maps", "{a: " * DEEP + "1" + "}" * DEEP),
    ("nested block maps", "".join(f"{' ' * k}k:\n" for k in range(600)) + " " * 600 + "1"),
    ("a list holding itself", "law: &x [*x]\n"),
    ("a map holding itself", "law: &x {a: *x}\n"),
    ("an unknown option holding itself", "typo: &x [*x, .inf]\n"),
    ("a device section holding itself", "devices: &x {cam: *x}\n"),
    ("a billion laughs", BILLION),
    ("the laughs under an unknown option", BILLION + "typo: *i\n"),
    ("the laughs in a device section", BILLION + "devices: {cam: {kind: camera, x: *i}}\n"),
    ("an infinity under a dotted key of a device", "devices: {cam: {a.b: .inf}}\n"),
    ("an infinity under a number key of a device", "devices: {cam: {1: .inf}}\n"),
    ("an infinity under a device of a number", "devices: {1: {kind: serial, x: .inf}}\n"),
    ("an infinity under a null key", "null: .inf\n"),
    ("an infinity under a dotted key", "law.x: .inf\n"),
])
def test_what_yaml_makes_small_and_python_large_is_refused(folder, loader, label, text):
    load_or_refuse(folder, loader, text.encode("utf-8"))


# Longer runs ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DOCS))
@LONG
@given(data=st.data())
def test_settings_long_run(folder, name, data):
    text = data.draw(st.sampled_from([TEXTS[name], TEXTS.get(f"{name}+devices", b"")]))
    load_or_refuse(folder, name, data.draw(st.one_of(
        mutated_doc(name), spliced(text), st.binary(max_size=MAX_BYTES),
        DOC.map(lambda d: dump(d)[:MAX_BYTES]))))
