"""The center's own CURVE key rotated with an overlap (issue 22, part 5), on real sockets on
127.0.0.1: the new key made by ``zhichao center keys rotate`` as an operator types it, a
real receiver serving both keys, real senders and outboxes. During the overlap a unit on
the old key and a unit on the new key both deliver; once the old key's last day has
ended (the receiver's clock moved past it) a unit on the old key does not get through,
and one that lists the new key's endpoint second fails over to it."""

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
import zmq.auth
from sqlalchemy import select
from test_transport_faults import FAST, Site, free_port, make_site, wait_for

from center.china_time import today
from center.device_keys import end_of_day
from center.ingest_models import StoredPacket
from center.receiver import Receiver
from center.settings import CenterSettings, KeyRotation, load_center_settings
from edge.doctor import ping_center
from edge.outbox import Outbox
from edge.sender import Sender, from_settings
from edge.settings import EvidenceSettings
from evidence.keys import make_keys
from sim.evidence import draft
from zhichao.cli import main
from zhichao.errors import ConfigError

pytestmark = pytest.mark.timeout(150)


def pending(box: Outbox) -> int:
    return box.counts()["pending"]


def stored(site: Site) -> dict[str, int]:
    """Device → packets the center stored, each once."""
    with site.engine.connect() as conn:
        rows = conn.execute(select(StoredPacket.device_id, StoredPacket.sequence)).all()
    assert len(set(rows)) == len(rows), "a packet stored twice"
    return dict(Counter(device for device, _ in rows))


def unit(site: Site, name: str, device_id: str, endpoints: list[str],
         server_keys: dict[str, bytes]) -> tuple[Outbox, Sender]:
    """An enrolled unit's outbox and a sender naming each endpoint's center key."""
    make_keys(site.keys, name)
    site.enrol(name, device_id)
    box = site.outbox(name)
    public, secret = zmq.auth.load_certificate(site.keys / f"{name}.key_secret")
    tx = Sender(box, endpoints, server_public=server_keys[endpoints[0]],
                client_public=public, client_secret=secret, options=FAST,
                endpoint_keys=server_keys)
    return box, tx


def put(box: Outbox, device_id: str, start: int, n: int) -> None:
    box.put_many([(draft(device_id, i), ()) for i in range(start, start + n)])


def rotate_with_the_command(site: Site, until, new_endpoint: str, capsys) -> CenterSettings:
    """``zhichao center keys rotate`` on the site's settings file; the section it prints
    pasted under receiver; the settings loaded from the file again."""
    config = site.tmp / "center.yaml"
    receiver = {"listen": [site.endpoint], "server_secret_key": "keys/center.key_secret",
                "batch_wait_ms": 10, "heartbeat_s": 1.0}
    config.write_text(yaml.safe_dump({"database": site.settings.database,
                                      "images_dir": "images", "receiver": receiver}))
    capsys.readouterr()
    assert main(["center", "keys", "rotate", "--config", str(config), "--until",
                 until.isoformat(), "--listen", new_endpoint]) == 0
    out = capsys.readouterr().out
    printed = out.split("receiver, then restart the center:\n", 1)[1].split("\n\nThe old", 1)[0]
    receiver.update(yaml.safe_load(printed))
    config.write_text(yaml.safe_dump({"database": site.settings.database,
                                      "images_dir": "images", "receiver": receiver}))
    assert "center_public_keys" in out and new_endpoint in out
    return load_center_settings(config)


def test_overlap_then_the_old_key_refused_and_failover_to_the_new(tmp_path, center_db_url,
                                                                   capsys):
    site = make_site(tmp_path, center_db_url)
    new_endpoint = f"tcp://127.0.0.1:{free_port()}"
    last_day = today() + timedelta(days=3)
    settings = rotate_with_the_command(site, last_day, new_endpoint, capsys)
    rotation = settings.receiver.rotation
    assert rotation is not None and rotation.old_key_until == last_day
    assert rotation.server_secret_key.stat().st_mode & 0o077 == 0
    old_public, _ = zmq.auth.load_certificate(site.keys / "center.key")
    new_public, _ = zmq.auth.load_certificate(rotation.server_secret_key.with_suffix(".key"))
    assert old_public != new_public
    keys = {site.endpoint: old_public, new_endpoint: new_public}

    clock = [end_of_day(last_day) - timedelta(hours=1)]
    receiver = Receiver(settings, site.engine, clock=lambda: clock[0])
    on_old, old_tx = unit(site, "u-old", "dev-old", [site.endpoint], keys)
    on_new, new_tx = unit(site, "u-new", "dev-new", [new_endpoint], keys)
    both, both_tx = unit(site, "u-both", "dev-both", [site.endpoint, new_endpoint], keys)
    receiver.start()
    senders = [old_tx, new_tx, both_tx]
    try:
        for tx in senders:
            tx.start()
        # the overlap: each unit delivers on the key it knows
        for box, device in ((on_old, "dev-old"), (on_new, "dev-new"), (both, "dev-both")):
            put(box, device, 0, 20)
        wait_for(lambda: pending(on_old) == pending(on_new) == pending(both) == 0, 40,
                 "every unit delivered during the overlap")
        assert (old_tx.status.endpoint, both_tx.status.endpoint) == (site.endpoint,) * 2
        assert new_tx.status.endpoint == new_endpoint
        assert stored(site) == {"dev-old": 20, "dev-new": 20, "dev-both": 20}
        # an idle unit pings; the pong tells the rule tables' digest, on either key
        wait_for(lambda: new_tx.status.center_rules_digest == old_tx.status.
                 center_rules_digest == receiver.rules_digest, 5, "pongs with the digest")

        clock[0] = end_of_day(last_day) + timedelta(seconds=1)  # the old key's day is over
        wait_for(lambda: ping_center(site.endpoint, (old_public, *zmq.auth.load_certificate(
            site.keys / "u-old.key_secret")), "zhichao", 0.5).round_trip_s is None, 5,
            "the old key's socket closed")
        for box, device in ((on_old, "dev-old"), (on_new, "dev-new"), (both, "dev-both")):
            put(box, device, 20, 10)
        wait_for(lambda: pending(on_new) == 0 and pending(both) == 0, 40,
                 "the units that know the new key delivered after the overlap")
        assert both_tx.status.endpoint == new_endpoint and both_tx.status.failovers >= 1
        assert pending(on_old) == 10, "a unit on the old key got through after its end"
        assert old_tx.status.endpoint == site.endpoint and old_tx.status.acked == 20
        # the old unit's 10 late packets never stored
        assert stored(site) == {"dev-old": 20, "dev-new": 30, "dev-both": 30}
    finally:
        for tx in senders:
            tx.stop()
        receiver.stop(10.0)
        site.engine.dispose()


def test_a_center_started_after_the_overlap_serves_the_new_key_only(tmp_path):
    site = make_site(tmp_path)
    new_endpoint = f"tcp://127.0.0.1:{free_port()}"
    make_keys(site.keys, "center-next", curve_only=True)
    ended = today() - timedelta(days=1)
    settings = site.settings.model_copy(update={"receiver": site.settings.receiver.model_copy(
        update={"rotation": KeyRotation(server_secret_key=site.keys / "center-next.key_secret",
                                        listen=[new_endpoint], old_key_until=ended)})})
    unit_keys = zmq.auth.load_certificate(site.keys / "edge.key_secret")
    old_public, _ = zmq.auth.load_certificate(site.keys / "center.key")
    new_public, _ = zmq.auth.load_certificate(site.keys / "center-next.key")
    receiver = Receiver(settings, site.engine)
    receiver.start()
    try:
        assert datetime.now(end_of_day(ended).tzinfo) > end_of_day(ended)
        old = ping_center(site.endpoint, (old_public, *unit_keys), "zhichao", 1.0)
        assert old.round_trip_s is None and not old.connected
        new = ping_center(new_endpoint, (new_public, *unit_keys), "zhichao", 2.0)
        assert new.round_trip_s is not None and new.rules_digest == receiver.rules_digest
        wrong = ping_center(new_endpoint, (old_public, *unit_keys), "zhichao", 1.0)
        assert wrong.round_trip_s is None and wrong.connected and not wrong.handshake
    finally:
        receiver.stop(10.0)
        site.engine.dispose()


def test_the_rotation_must_be_on_its_own_addresses_and_once_at_a_time(tmp_path, capsys):
    site = make_site(tmp_path)
    site.engine.dispose()
    with pytest.raises(ValueError, match=r"rotation\.listen must differ from listen"):
        site.settings.receiver.model_validate({
            "listen": [site.endpoint], "rotation": {"server_secret_key": "n.key_secret",
                                                    "listen": [site.endpoint],
                                                    "old_key_until": "2027-01-31"}})
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"database": site.settings.database, "receiver": {
        "listen": [site.endpoint], "server_secret_key": "keys/center.key_secret"}}))
    assert main(["center", "keys", "rotate", "--config", str(config), "--until",
                 "2027-01-31", "--listen", site.endpoint]) == 2
    assert "one address serves one key" in capsys.readouterr().err
    settings = rotate_with_the_command(site, today(), f"tcp://127.0.0.1:{free_port()}",
                                       capsys)
    assert settings.receiver.rotation is not None
    assert main(["center", "keys", "rotate", "--config", str(tmp_path / "center.yaml"),
                 "--until", "2027-01-31", "--listen", "tcp://127.0.0.1:9"]) == 2
    assert "a rotation is under way" in capsys.readouterr().err
    (settings.receiver.rotation.server_secret_key).unlink()
    with pytest.raises(ConfigError, match=r"receiver\.rotation\.server_secret_key"):
        Receiver(settings, site.engine)


def test_a_units_endpoint_keys_are_checked_and_used(tmp_path):
    make_keys(tmp_path / "keys", "unit")
    make_keys(tmp_path / "keys", "center", curve_only=True)
    make_keys(tmp_path / "keys", "center-next", curve_only=True)
    new, old = "tcp://10.0.0.1:5761", "tcp://10.0.0.1:5760"
    with pytest.raises(ValueError, match=r"center_public_keys names tcp://10\.0\.0\.2:5761, "
                       r"not among endpoints"):
        EvidenceSettings(endpoints=[old], center_public_keys={
            "tcp://10.0.0.2:5761": Path("keys/center-next.key")})
    settings = EvidenceSettings(
        outbox=Path("outbox.db"), signing_key=Path("keys/unit.sign"),
        curve_secret_key=Path("keys/unit.key_secret"), endpoints=[new, old],
        center_public_keys={new: Path("keys/center-next.key")}).resolved(tmp_path)
    assert settings.center_key_of(new) == tmp_path / "keys" / "center-next.key"
    assert settings.center_key_of(old) == tmp_path / "keys" / "center.key"
    box, tx = from_settings(settings)
    try:
        assert tx.endpoint_keys == {new: zmq.auth.load_certificate(
            tmp_path / "keys" / "center-next.key")[0]}
    finally:
        box.close()
