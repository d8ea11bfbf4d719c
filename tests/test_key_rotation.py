"""A unit's keys rotated with an overlap, and revoked (issue 22, part 5), on real CURVE
sockets on 127.0.0.1: a real receiver, a real sender and outbox, the commands as an
operator types them (``zhichao keys rotate``, ``zhichao center devices rotate|revoke``)."""

from datetime import UTC, date, datetime, timedelta

import pytest
import zmq.auth
from sqlalchemy import select, update
from test_transport_faults import FAST, Site, make_site, wait_for

from center.china_time import today
from center.device_keys import DeviceKey, fingerprint
from center.ingest_models import Refusal
from center.receiver import Receiver
from edge.outbox import Outbox
from edge.sender import Sender
from evidence.signing import load_signing_key, public_pem
from sim.evidence import draft
from zhichao.cli import main


def center_config(site: Site) -> str:
    """A settings file naming the site's database, for the center's commands."""
    path = site.tmp / "center.yaml"
    path.write_text(f"database: '{site.settings.database}'\n", encoding="utf-8")
    return str(path)


def reasons(box: Outbox) -> dict[int, str]:
    """Sequence → the center's reason, of the packets it refused."""
    db = box._db()
    return dict(db.execute("SELECT sequence, reason FROM packets WHERE state = 'refused'"))


def old_files(site: Site) -> dict[str, str]:
    """Suffix → path of the dated files ``keys rotate`` kept."""
    return {p.name.split(".", 2)[2]: str(p) for p in site.keys.glob("edge.2*")}


def sender_with(site: Site, box: Outbox, secret_file: str) -> Sender:
    """A sender connecting with the CURVE key pair of ``secret_file``."""
    client_public, client_secret = zmq.auth.load_certificate(secret_file)
    server_public, _ = zmq.auth.load_certificate(site.keys / "center.key")
    return Sender(box, [site.endpoint], server_public=server_public,
                  client_public=client_public, client_secret=client_secret, options=FAST)


def send(site: Site, box: Outbox, secret_file: str, until) -> None:
    """Run a sender until ``until(box)`` holds (within 15 s)."""
    tx = sender_with(site, box, secret_file)
    tx.start()
    try:
        wait_for(lambda: until(box), 15, "the outbox answered")
    finally:
        tx.stop()


def rotate(site: Site, until: date) -> None:
    """The unit's keys rotated, and the center told, as the operator does it."""
    assert main(["keys", "rotate", "--name", "edge", "--out", str(site.keys)]) == 0
    assert main(["center", "devices", "rotate", "--config", center_config(site), "--id",
                 "dev-1", "--sign-key", str(site.keys / "edge.sign.pub"), "--curve-key",
                 str(site.keys / "edge.key"), "--old-key-until", until.isoformat()]) == 0


def test_keys_rotate_keeps_the_old_files_under_a_dated_name(tmp_path, capsys):
    out = tmp_path / "k"
    assert main(["keys", "rotate", "--name", "u1", "--out", str(out)]) == 2
    assert "no key to rotate" in capsys.readouterr().err
    main(["keys", "new", "--name", "u1", "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["keys", "rotate", "--name", "u1", "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 8
    kept = {n.split(".", 2)[2]: (out / n).read_bytes() for n in names if n.count(".") >= 2
            and n.split(".")[1].startswith("2")}
    assert kept == {"key": before["u1.key"], "key_secret": before["u1.key_secret"],
                    "sign": before["u1.sign"], "sign.pub": before["u1.sign.pub"]}
    assert (out / "u1.sign").read_bytes() != before["u1.sign"]
    assert (out / "u1.sign").stat().st_mode & 0o077 == 0
    assert "give it to the center" in capsys.readouterr().out


def test_rotation_with_an_overlap_on_real_sockets(tmp_path, center_db_url, capsys):
    """Old keys accepted during the overlap, new keys at once; the old signing key refused
    once the overlap is over, naming the key and the date; the old CURVE key cannot
    connect then."""
    site = make_site(tmp_path, center_db_url)
    rx = Receiver(site.settings, site.engine)
    rx.start()
    try:
        box = site.outbox()  # the old signing key
        box.put(draft("dev-1", 1))
        send(site, box, str(site.keys / "edge.key_secret"),
             lambda b: b.counts()["acked"] == 1)
        box.put(draft("dev-1", 2))  # signed with the old key, not sent before the rotation
        old_sign_fp = fingerprint("sign", public_pem(load_signing_key(
            site.keys / "edge.sign")).decode())
        rotate(site, today() + timedelta(days=7))
        assert "accepted until" in capsys.readouterr().out
        old = old_files(site)
        # old signing key and old CURVE key during the overlap: stored
        send(site, box, old["key_secret"], lambda b: b.counts()["acked"] == 2)
        box.close()
        box = site.outbox()  # the unit restarted: the new signing key
        box.put(draft("dev-1", 3))
        send(site, box, str(site.keys / "edge.key_secret"),
             lambda b: b.counts()["acked"] == 3)
        # the overlap's last day is over (the center's clock past it; changed_at as the
        # commands set it, or the running receiver would keep its cached keys)
        past = datetime.now(UTC) - timedelta(minutes=1)
        with site.engine.begin() as conn:
            conn.execute(update(DeviceKey).values(accepted_until=past, changed_at=past))
        box.close()
        stale = Outbox(site.tmp / "edge.db", load_signing_key(old["sign"]))
        stale.put(draft("dev-1", 4))  # signed with the old key after the overlap
        send(site, stale, str(site.keys / "edge.key_secret"),
             lambda b: b.counts()["refused"] == 1)
        why = reasons(stale)[4]
        assert f"signing key {old_sign_fp[:16]}" in why and "accepted until" in why, why
        assert "(China time); received after it" in why, why
        refused_before = rx.allow.refused
        stale.put(draft("dev-1", 5))
        tx = sender_with(site, stale, old["key_secret"])
        tx.start()
        try:
            wait_for(lambda: rx.allow.refused > refused_before, 15,
                     "the old CURVE key refused at the handshake")
            assert stale.counts()["pending"] == 1
        finally:
            tx.stop()
        stale.close()
    finally:
        rx.stop()
    assert sorted(site.stored()) == [1, 2, 3]
    assert main(["center", "devices", "keys", "--config", center_config(site),
                 "--id", "dev-1"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["sign", "sign", "curve", "curve"]
    assert listed[1].startswith(f"sign  {old_sign_fp}  accepted until"), listed
    with site.engine.connect() as conn:
        assert conn.execute(select(Refusal.reason).where(Refusal.sequence == 4)
                            ).scalar() == "expired_key"


def test_a_revoked_key_is_refused_and_cannot_connect(tmp_path, center_db_url, capsys):
    """A revoked signing key's packets refused with the reason over a connection already
    open; all keys revoked: no new connection; what was stored before stays."""
    site = make_site(tmp_path, center_db_url)
    config = center_config(site)
    sign_fp = fingerprint("sign", public_pem(load_signing_key(
        site.keys / "edge.sign")).decode())
    rx = Receiver(site.settings, site.engine)
    rx.start()
    box = site.outbox()
    tx = site.sender(box)
    tx.start()
    try:
        box.put(draft("dev-1", 1))
        wait_for(lambda: box.counts()["acked"] == 1, 15, "the first packet")
        assert main(["center", "devices", "revoke", "--config", config, "--id", "dev-1",
                     "--key", sign_fp[:10], "--reason", "unit stolen from G60 K123"]) == 0
        assert f"sign key {sign_fp[:16]} revoked" in capsys.readouterr().out
        box.put(draft("dev-1", 2))
        wait_for(lambda: box.counts()["refused"] == 1, 15, "the revoked key's packet")
        why = reasons(box)[2]
        assert f"signing key {sign_fp[:16]} was revoked" in why
        assert "unit stolen from G60 K123" in why
        assert main(["center", "devices", "revoke", "--config", config, "--id", "dev-1",
                     "--key", "all", "--reason", "unit stolen"]) == 0
        assert "curve key" in capsys.readouterr().out
        tx.stop()
        refused_before = rx.allow.refused
        box.put(draft("dev-1", 3))
        tx = site.sender(box)
        tx.start()
        wait_for(lambda: rx.allow.refused > refused_before, 15,
                 "the revoked CURVE key refused at the handshake")
        assert box.counts()["pending"] == 1
    finally:
        tx.stop()
        rx.stop()
    assert sorted(site.stored()) == [1]  # not retroactive
    assert main(["center", "devices", "revoke", "--config", config, "--id", "dev-1",
                 "--key", "all", "--reason", "again"]) == 0
    assert "revoked already" in capsys.readouterr().out
    with site.engine.connect() as conn:
        assert conn.execute(select(Refusal.reason).where(Refusal.sequence == 2)
                            ).scalar() == "revoked_key"


def test_rotate_and_revoke_refuse_what_cannot_be(tmp_path, capsys):
    site = make_site(tmp_path)
    config = center_config(site)
    base = ["center", "devices", "rotate", "--config", config, "--id", "dev-1"]
    pub = str(site.keys / "edge.sign.pub")
    assert main([*base, "--sign-key", pub, "--old-key-until", "2030-01-01"]) == 2
    assert "is the current one already" in capsys.readouterr().err
    assert main([*base, "--sign-key", pub, "--old-key-until", "2020-01-01"]) == 2
    assert "has ended already" in capsys.readouterr().err
    assert main([*base, "--old-key-until", "2030-01-01"]) == 2
    assert main(["center", "devices", "revoke", "--config", config, "--id", "dev-1",
                 "--key", "0123456789", "--reason", "x"]) == 2
    assert "no key not revoked yet of device dev-1" in capsys.readouterr().err
    assert main(["center", "devices", "revoke", "--config", config, "--id", "nope",
                 "--key", "all", "--reason", "x"]) == 2
    with pytest.raises(SystemExit):
        main([*base, "--sign-key", pub, "--old-key-until", "soon"])
    site.engine.dispose()
