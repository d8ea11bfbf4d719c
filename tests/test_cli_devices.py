"""``zhichao center devices``: a registry of many devices imported and listed in pages on
the real command line; files in the encodings Excel writes."""

import json
from pathlib import Path

import pytest
from test_center_registry import many_devices

from zhichao.cli import main


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A center settings file (SQLite beside it)."""
    config = tmp_path / "center.yaml"
    config.write_text("database: center.db\n", encoding="utf-8")
    return config


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["center", "devices", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_many_devices_imported_and_listed_in_pages(capsys, site, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = site.parent / "many.csv"
    path.write_text(many_devices(250), encoding="utf-8")
    code, out, _ = cli(capsys, "import", str(path), "--config", str(site))
    assert code == 0 and "250 devices added, 0 updated (D00000, D00001" in out
    assert "D00249" not in out and "and 240 more" in out
    code, out, _ = cli(capsys, "list", "--config", str(site), "--json", "--limit", "20",
                       "--offset", "200")
    assert [json.loads(line)["device_id"] for line in out.splitlines()] == \
        [f"D{i:05d}" for i in range(200, 220)]
    code, out, _ = cli(capsys, "list", "--config", str(site), "--json")
    assert len(out.splitlines()) == 250
    code, out, _ = cli(capsys, "list", "--config", str(site), "--limit", "3", "--offset", "10")
    assert code == 0 and "D00010" in out and "D00012" in out and "D00013" not in out
    assert "devices 11–13 of 250" in out and "--offset 13" in out


def test_an_encoding_is_chosen_on_the_command_line(capsys, site):
    path = site.parent / "gbk.csv"
    path.write_bytes(many_devices(3).encode("gbk"))
    code, _, err = cli(capsys, "import", str(path), "--config", str(site), "--encoding",
                       "utf-8")
    assert code == 2 and "gbk.csv line 2: not utf-8" in err
    code, out, _ = cli(capsys, "import", str(path), "--config", str(site), "--encoding", "gbk")
    assert code == 0 and "3 devices added" in out
