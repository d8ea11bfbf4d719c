"""Edge settings: the shipped example loads and documents every option; every bad file
stops start-up with one message naming the file, the option and the value (Klipper's
SHOULD_FAIL cases, each written as a real YAML file)."""

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from drivers.strips import StripArray
from edge.plate_workers import PlateSettings
from edge.settings import (
    EdgeSettings,
    EvidenceSettings,
    RulesSettings,
    UnitSettings,
    load_edge_settings,
)
from edge.signal.settings import SignalSettings
from edge.timebase.settings import TimeSettings
from zhichao.errors import ConfigError
from zhichao.resources import config_dir

EXAMPLE = config_dir() / "edge.example.yaml"
SECTIONS: dict[str, type[BaseModel]] = {
    "site": StripArray, "signal": SignalSettings, "rules": RulesSettings,
    "evidence": EvidenceSettings, "time": TimeSettings, "plates": PlateSettings,
    "unit": UnitSettings,
}


def write(tmp_path: Path, text: str, name: str = "edge.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def fails(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_edge_settings(path)
    return str(info.value)


def test_the_example_loads_with_every_default():
    settings = load_edge_settings(EXAMPLE)
    assert isinstance(settings, EdgeSettings)
    # "Every option and its default is listed": the file is the defaults, spelled out.
    assert settings == EdgeSettings()
    assert settings.site.n_channels == 16


def test_the_example_documents_every_option():
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert set(data) == set(EdgeSettings.model_fields)
    for section, model in SECTIONS.items():
        assert set(data[section]) == set(model.model_fields), section


def test_a_site_file_overrides_some_options(tmp_path):
    path = write(tmp_path, "device_id: g60-k1234\nsite:\n  lanes: 2\n  fs_hz: 5000\n"
                           "signal:\n  hi_counts: 300\ncalibration: [1, 1, 1, 1, 1.01, 1, 1, 1]\n")
    s = load_edge_settings(path)
    assert (s.device_id, s.site.lanes, s.site.fs_hz, s.signal.hi_counts) == (
        "g60-k1234", 2, 5000.0, 300.0)
    assert s.calibration == [1, 1, 1, 1, 1.01, 1, 1, 1]
    assert s.site.rows == StripArray().rows and s.signal.lo_counts == SignalSettings().lo_counts


def test_an_empty_file_is_all_defaults(tmp_path):
    assert load_edge_settings(write(tmp_path, "")) == EdgeSettings()


# SHOULD_FAIL: (file text, option named, value named, what else the message says)
SHOULD_FAIL = {
    "unknown option": ("site:\n  lanes: 2\n  fs_hzz: 10000\n", "site.fs_hzz", None,
                       "not a known option"),
    "unknown section": ("signals:\n  lo_counts: 50\n", "signals", None, "not a known option"),
    "wrong type": ("site:\n  lanes: two\n", "site.lanes", "'two'", "integer"),
    "wrong type, list": ("signal:\n  hi_counts: [250]\n", "signal.hi_counts", None, "number"),
    "negative": ("signal:\n  lo_counts: -5\n", "signal.lo_counts", "-5", "greater than 0"),
    "zero sample rate": ("site:\n  fs_hz: 0\n", "site.fs_hz", "0", "greater than 0"),
    "too many lanes": ("site:\n  lanes: 17\n", "site.lanes", "17", "less than or equal"),
    "one row": ("site:\n  rows: 1\n", "site.rows", "1", "greater than or equal to 2"),
    "rows too far apart": ("site:\n  row_spacing_m: 1.5\n", "site.row_spacing_m", "1.5",
                           "signal.min_axle_spacing_m (1.2)"),
    "rows as far apart as the axles": ("site:\n  row_spacing_m: 1.0\nsignal:\n"
                                       "  min_axle_spacing_m: 1.0\n", "site.row_spacing_m",
                                       "1.0", "must be below"),
    "strip wider than the rows": ("site:\n  strip_width_m: 1.2\n", "strip_width_m", "1.2",
                                  "row_spacing_m"),
    "hi below lo": ("signal:\n  lo_counts: 300\n  hi_counts: 250\n", "hi_counts", "250",
                    "lo_counts (300"),
    "frame not a multiple of decimation": ("signal:\n  frame_samples: 4000\n  decimation: 7\n",
                                           "frame_samples", "4000", "decimation (7)"),
    "calibration, wrong number": ("site:\n  lanes: 1\ncalibration: [1.0, 1.0, 1.0]\n",
                                  "calibration", "3 factors", "(4)"),
    "calibration, not numbers": ("site:\n  lanes: 1\ncalibration: [1.0, x, 1.0, 1.0]\n",
                                 "calibration.1", "'x'", "number"),
    "empty device id": ("device_id: ''\n", "device_id", None, "at least 1 character"),
    "top level a list": ("- site\n- signal\n", None, None, "dictionary"),
}


@pytest.mark.parametrize("case", SHOULD_FAIL)
def test_should_fail(tmp_path, case):
    text, option, value, says = SHOULD_FAIL[case]
    path = write(tmp_path, text)
    message = fails(path)
    assert message.startswith(f"{path}:")
    assert "\n" not in message
    if option is not None:
        assert re.search(rf"\b{re.escape(option)}\b", message), message
    if value is not None:
        assert value in message
    assert says in message


def test_an_unknown_option_message_names_the_value(tmp_path):
    path = write(tmp_path, "site:\n  lanes: 2\n  fs_hzz: 12345\n")
    assert "12345" in fails(path)


def test_several_problems_give_one_line_each(tmp_path):
    path = write(tmp_path, "site:\n  lanes: -1\n  rowz: 2\nsignal:\n  lo_counts: 0\n")
    lines = fails(path).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: option '") for line in lines)
    assert {re.search(r"option '([^']+)'", line).group(1) for line in lines} == {
        "site.lanes", "site.rowz", "signal.lo_counts"}


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "site:\n  lanes: 1\n signal: [\n")
    message = fails(path)
    assert message.startswith(f"{path}:")
    assert "line 3" in message and "not valid YAML" in message


def test_invalid_yaml_deeper_in_the_file_names_its_line(tmp_path):
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("hi_counts"))
    lines[at] = "  hi_counts: [250"
    path = write(tmp_path, "\n".join(lines) + "\n")
    number = int(re.search(r"line (\d+)", fails(path)).group(1))
    assert at + 1 <= number <= at + 2


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = fails(path)
    assert str(path) in message and "cannot read" in message
