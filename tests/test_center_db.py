"""The center's database helpers, on a real SQLite file and a real PostgreSQL database."""

from datetime import UTC, datetime

from sqlalchemy import insert, select

from center.db import bulk_insert, make_engine, upgrade
from center.ingest_models import Device, StoredPacket

T = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def packet_row(sequence: int, chain_ok: bool | None) -> dict:
    return {"device_id": "dev-1", "sequence": sequence, "hash": f"{sequence:064x}",
            "previous_hash": "0" * 64, "captured_at": T, "lane": 2,
            "suspected_overload": sequence % 2 == 0, "meta": bytes([0, 10, 92, 255]) * 3,
            "signature": bytes(range(64)), "received_at": T, "chain_ok": chain_ok}


def test_bulk_insert_round_trips_and_commits_as_the_first_statement(center_db_url):
    """Rows go in with their types intact (bytes with NUL and backslash, False, None, a
    time zone) and ids from the sequence; a bulk insert that is the connection's first
    statement is committed by the caller's commit, and one rolled back leaves nothing."""
    engine = make_engine(center_db_url)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(Device).values(device_id="dev-1", sign_public_key="k",
                                           curve_public_key="c" * 40, enrolled_at=T))
    rows = [packet_row(n, [True, False, None][n % 3]) for n in range(1, 8)]
    with engine.connect() as conn:
        bulk_insert(conn, StoredPacket.__table__, rows[:5])
        conn.commit()
    with engine.connect() as conn:
        bulk_insert(conn, StoredPacket.__table__, rows[5:])
        conn.rollback()
    with engine.connect() as conn:
        stored = conn.execute(select(StoredPacket).order_by(StoredPacket.sequence)).all()
    engine.dispose()
    assert [r.id for r in stored] == [1, 2, 3, 4, 5]
    for row, want in zip(stored, rows[:5], strict=True):
        got = {k: getattr(row, k) for k in want}
        for k in ("captured_at", "received_at"):
            got[k] = utc(got[k])
        assert got == want


def utc(t: datetime) -> datetime:
    """A stored time in UTC (SQLite gives it back without its zone, PostgreSQL in the
    session's)."""
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
