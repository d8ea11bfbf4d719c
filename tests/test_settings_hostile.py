"""Settings as a careless operator writes them: values without meaning (infinity, a
heartbeat of 1e12 s, a MySQL URL, an endpoint ``htp://x``) stop start-up with one line
naming the option and what is allowed; files in GBK, GB18030 or UTF-16 (what Excel and
Notepad on a Chinese desktop save) load as they are, and an undecodable one is named with
its line and column. Each case is a real file through the real loader."""

import codecs
import re
from pathlib import Path

import pytest

from center.settings import CenterSettings, load_center_settings
from edge.settings import load_edge_settings
from zhichao.errors import ConfigError
from zhichao.settings import load_model, read_yaml


def write(tmp_path: Path, text: str, name: str = "settings.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def center_fails(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_center_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "\n" not in message, message
    return message


def edge_fails(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_edge_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "\n" not in message, message
    return message


# -- numbers ---------------------------------------------------------------------------


def test_an_infinite_process_interval_is_refused_naming_the_option(tmp_path):
    message = center_fails(write(tmp_path, "law:\n  process_interval_s: .inf\n"))
    assert "option 'law.process_interval_s'" in message and "finite" in message
    assert "at most 3600 s: an hour" in message


@pytest.mark.parametrize("text", ["1e12", "1.0e+12"])  # YAML reads the first as a string
def test_a_heartbeat_of_1e12_s_is_refused_with_a_bound_that_says_why(tmp_path, text):
    message = center_fails(write(tmp_path, f"receiver:\n  heartbeat_s: {text}\n"))
    assert "option 'receiver.heartbeat_s'" in message and "1000000000000" in message
    assert "32767" in message and "keepalive" in message


@pytest.mark.parametrize(("text", "option"), [
    ("law:\n  trip_window_h: .nan\n", "law.trip_window_h"),
    ("law:\n  process_interval_s: 1.0e+9\n", "law.process_interval_s"),
    ("receiver:\n  batch_wait_ms: 100000000000\n", "receiver.batch_wait_ms"),
    ("receiver:\n  batch_max: 100000000000\n", "receiver.batch_max"),
    ("law:\n  min_plate_confidence: .nan\n", "law.min_plate_confidence"),
])
def test_every_center_duration_and_count_is_bounded(tmp_path, text, option):
    assert f"option '{option}'" in center_fails(write(tmp_path, text))


@pytest.mark.parametrize(("text", "option"), [
    ("evidence:\n  heartbeat_s: .inf\n", "evidence.heartbeat_s"),
    ("evidence:\n  heartbeat_s: 1e12\n", "evidence.heartbeat_s"),
    ("evidence:\n  failover_s: 1.0e+12\n", "evidence.failover_s"),
    ("evidence:\n  ack_timeout_s: .nan\n", "evidence.ack_timeout_s"),
    ("evidence:\n  resend_max_s: .inf\n", "evidence.resend_max_s"),
    ("evidence:\n  keep_days: .inf\n", "evidence.keep_days"),
    ("evidence:\n  window: 100000000000\n", "evidence.window"),
    ("evidence:\n  window_mb: .inf\n", "evidence.window_mb"),
    ("evidence:\n  hold_max: 100000000000\n", "evidence.hold_max"),
    ("signal:\n  hi_counts: .inf\n", "signal.hi_counts"),     # any section, finite or refused
    ("time:\n  fit:\n    window_s: .nan\n", "time.fit.window_s"),
])
def test_every_edge_duration_and_count_is_finite_and_bounded(tmp_path, text, option):
    assert f"option '{option}'" in edge_fails(write(tmp_path, text))


# -- the database and the endpoints ----------------------------------------------------


def test_a_mysql_database_is_refused_naming_what_is_supported(tmp_path):
    message = center_fails(write(tmp_path, "database: mysql://zc:hunter2@db.local/zhichao\n"))
    assert "option 'database'" in message and "mysql" in message
    assert "SQLite" in message and "postgresql://" in message
    assert "hunter2" not in message  # a password in a settings file is not echoed


@pytest.mark.parametrize("url", ["center.db", "sub/center.db", "sqlite:///center.db",
                                 "postgresql://zc@127.0.0.1/zhichao",
                                 "postgresql+psycopg://zc@127.0.0.1:5433/zhichao"])
def test_the_supported_databases_load(tmp_path, url):
    load_center_settings(write(tmp_path, f"database: {url}\n"))


def test_a_postgresql_url_without_a_driver_opens_with_the_installed_one():
    from center.db import database_url  # noqa: PLC0415

    assert database_url("postgresql://zc@h/db") == "postgresql+psycopg://zc@h/db"
    assert database_url("postgresql+psycopg://zc@h/db") == "postgresql+psycopg://zc@h/db"


def test_an_edge_endpoint_htp_is_refused_at_load_naming_the_option(tmp_path):
    message = edge_fails(write(tmp_path, "evidence:\n  endpoints: [tcp://10.0.0.1:5760, "
                                         "'htp://x']\n"))
    assert "option 'evidence.endpoints.1'" in message and "'htp://x'" in message
    assert "tcp://HOST:PORT" in message and "ipc://" in message


@pytest.mark.parametrize("endpoint", ["tcp://x", "tcp://:5760", "tcp://h:0", "tcp://h:65536",
                                      "tcp://h:port", "ipc://", "tcp://h:*"])
def test_an_edge_endpoint_without_host_or_port_is_refused(tmp_path, endpoint):
    message = edge_fails(write(tmp_path, f"evidence:\n  endpoints: ['{endpoint}']\n"))
    assert "option 'evidence.endpoints.0'" in message


@pytest.mark.parametrize("endpoint", ["htp://x", "tcp://127.0.0.1", "tcp://h:99999"])
def test_a_receiver_listen_endpoint_is_parsed_at_load(tmp_path, endpoint):
    message = center_fails(write(tmp_path, f"receiver:\n  listen: ['{endpoint}']\n"))
    assert "option 'receiver.listen.0'" in message and "tcp://HOST:PORT" in message


@pytest.mark.parametrize("endpoint", ["tcp://*:5760", "tcp://0.0.0.0:5760", "tcp://eth0:5760",
                                      "tcp://[::1]:5760", "ipc:///run/zhichao/center.sock"])
def test_listen_endpoints_that_zmq_binds_load(tmp_path, endpoint):
    settings = load_center_settings(write(tmp_path, f"receiver:\n  listen: ['{endpoint}']\n"))
    assert settings.receiver.listen == [endpoint]


# -- encodings -------------------------------------------------------------------------

EDGE_TEXT = "# 杭州 G60 治超站\nevidence:\n  site: G60 K123+450 杭州\n  direction: 往上海\n"


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-16", "utf-16-le", "utf-16-be",
                                      "utf-8-sig", "utf-8"])
def test_a_settings_file_in_a_chinese_desktops_encoding_loads(tmp_path, encoding):
    path = tmp_path / "edge.yaml"
    data = EDGE_TEXT.encode(encoding)
    if encoding in ("utf-16-le", "utf-16-be"):  # Notepad's "Unicode" with its BOM
        bom = codecs.BOM_UTF16_LE if encoding.endswith("le") else codecs.BOM_UTF16_BE
        data = bom + data
    path.write_bytes(data)
    settings = load_edge_settings(path)
    assert (settings.evidence.site, settings.evidence.direction) == ("G60 K123+450 杭州",
                                                                      "往上海")


def test_a_utf16_file_without_its_bom_loads(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_bytes(EDGE_TEXT.encode("utf-16-le"))
    assert load_edge_settings(path).evidence.direction == "往上海"


def test_a_gbk_center_settings_file_loads(tmp_path):
    path = tmp_path / "center.yaml"
    path.write_bytes("# 中心设置\ndatabase: 中心.db\n".encode("gbk"))
    assert load_center_settings(path).database.endswith("中心.db")


def test_an_undecodable_file_is_named_with_its_line_and_column(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_bytes(b"evidence:\n  site: G60\n  direction: ab\xff\xfe\xff\n")
    message = edge_fails(path)
    assert "line 3" in message and "column 16" in message and "0xff" in message
    assert "UTF-8" in message and "GB18030" in message


def test_read_yaml_takes_a_chosen_encoding(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_bytes("名: 值\n".encode("big5"))
    assert read_yaml(path, encoding="big5") == {"名": "值"}
    path.write_bytes(b"a: \xff\xff\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: line 1 column 4")):
        read_yaml(path, encoding="big5")


def test_load_model_takes_a_chosen_encoding(tmp_path):
    path = tmp_path / "center.yaml"
    path.write_bytes("database: 中心.db\n".encode("big5"))
    assert load_model(path, CenterSettings, encoding="big5").database == "中心.db"
