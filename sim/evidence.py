"""Simulated evidence: packet drafts and image bytes for tests, the demo and benchmarks.

The images are not photographs: a JPEG start marker, random bytes of the asked size and an
end marker. Nothing downstream decodes them; their size and digest are what transport and
storage feel.
"""

from datetime import UTC, datetime, timedelta

import numpy as np

from evidence.packet import (
    GENESIS_HASH,
    CalibrationRecord,
    ImageRole,
    Packet,
    PlateRecord,
    ProcessingTrail,
    VehicleRecord,
    image_ref,
)

ROLES: tuple[ImageRole, ...] = ("front", "side", "rear", "plate")
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def fake_jpeg(size: int, seed: int) -> bytes:
    """``size`` bytes that start and end like a JPEG."""
    body = np.random.default_rng(seed).bytes(max(0, size - 4))
    return b"\xff\xd8" + body + b"\xff\xd9"


def draft(device_id: str = "dev-1", n: int = 1, *, suspected: bool = False,
          images: tuple[bytes, ...] = (), lane: int = 1) -> Packet:
    """The ``n``-th vehicle of a simulated site, with references to ``images`` (roles
    front, side, rear, plate in order); sequence and previous hash are placeholders the
    outbox replaces."""
    gross = 55_000.0 if suspected else 30_000.0
    loads = [7_000.0, 12_000.0, 12_000.0] + [(gross - 31_000.0) / 3] * 3
    return Packet(
        device_id=device_id, site="G60 K123+400", lane=lane, direction="up",
        captured_at=T0 + timedelta(seconds=n), clock_status="synced", sequence=1,
        previous_hash=GENESIS_HASH, suspected_overload=suspected,
        vehicle=VehicleRecord(axle_loads_kg=loads, axle_groups=[1, 2, 3],
                              spacings_m=[3.2, 1.35, 7.0, 1.31, 1.31], speed_kmh=72.5,
                              gross_kg=gross, axle_code="1129", raw_record=b"raw%d" % n),
        plate=PlateRecord(text="浙A12345", colour="yellow", confidence=0.97,
                          box=[120.0, 40.0, 88.0, 28.0, 0.5]),
        calibration=CalibrationRecord(version="2026-04", factor_set="spring",
                                      certificate="JJG907-2026-0001"),
        trail=ProcessingTrail(software_version="0.1.0", rules_digest="sha256:" + "a" * 16),
        images=[image_ref(ROLES[i % len(ROLES)], data) for i, data in enumerate(images)],
    )
