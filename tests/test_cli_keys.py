"""``zhichao keys new`` and the edge's ``evidence:`` settings that use its files."""

import stat

import pytest
import zmq.auth

from edge.sender import from_settings
from edge.settings import load_edge_settings
from evidence.signing import load_public_key, load_signing_key, public_pem
from zhichao.cli import main
from zhichao.errors import ConfigError


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_new_writes_both_pairs_private_files_private(tmp_path, capsys):
    assert main(["keys", "new", "--name", "g60-k1234", "--out", str(tmp_path / "k")]) == 0
    k = tmp_path / "k"
    assert sorted(p.name for p in k.iterdir()) == [
        "g60-k1234.key", "g60-k1234.key_secret", "g60-k1234.sign", "g60-k1234.sign.pub"]
    assert mode(k / "g60-k1234.sign") == 0o600 and mode(k / "g60-k1234.key_secret") == 0o600
    public, secret = zmq.auth.load_certificate(k / "g60-k1234.key_secret")
    assert secret is not None and zmq.auth.load_certificate(k / "g60-k1234.key")[0] == public
    signing = load_signing_key(k / "g60-k1234.sign")
    assert public_pem(load_public_key((k / "g60-k1234.sign.pub").read_text())) == \
        public_pem(signing)
    assert "give it to the center" in capsys.readouterr().out


def test_keys_new_curve_only_and_never_overwrites(tmp_path, capsys):
    assert main(["keys", "new", "--name", "center", "--out", str(tmp_path), "--curve-only"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["center.key", "center.key_secret"]
    before = (tmp_path / "center.key_secret").read_bytes()
    assert main(["keys", "new", "--name", "center", "--out", str(tmp_path)]) == 2
    assert "center.key: exists already" in capsys.readouterr().err
    assert (tmp_path / "center.key_secret").read_bytes() == before
    assert main(["keys", "new", "--name", "../x", "--out", str(tmp_path)]) == 2


def test_evidence_settings_open_the_outbox_and_sender(tmp_path):
    main(["keys", "new", "--name", "edge", "--out", str(tmp_path / "keys")])
    main(["keys", "new", "--name", "center", "--out", str(tmp_path / "keys"), "--curve-only"])
    path = tmp_path / "edge.yaml"
    path.write_text("evidence:\n  outbox: data/outbox.db\n  endpoints: [tcp://127.0.0.1:1, "
                    "tcp://127.0.0.1:2]\n  window: 50\n", encoding="utf-8")
    settings = load_edge_settings(path).evidence.resolved(path.parent)
    assert settings.signing_key == tmp_path / "keys" / "edge.sign"
    outbox, sender = from_settings(settings)
    assert outbox.path == tmp_path / "data" / "outbox.db" and outbox.path.exists()
    assert sender.endpoints == ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]
    assert sender.options.window == 50
    (tmp_path / "keys" / "center.key").unlink()
    with pytest.raises(ConfigError, match=r"evidence\.center_public_key .*center\.key"):
        from_settings(settings)
    (tmp_path / "keys" / "edge.sign").unlink()
    with pytest.raises(ConfigError, match=r"evidence\.signing_key: .*edge\.sign: cannot read"):
        from_settings(settings)
