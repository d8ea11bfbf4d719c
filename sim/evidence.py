"""Simulated evidence: packet drafts and image bytes for tests, the demo and benchmarks.

The images are not photographs: a JPEG start marker, random bytes of the asked size and an
end marker. Nothing downstream decodes them; their size and digest are what transport and
storage feel.
"""

import functools
from datetime import UTC, date, datetime, timedelta

import numpy as np

from calibration.chain import Certificate, Chain, ChannelGain, SpeedFactor
from evidence.packet import (
    GENESIS_HASH,
    CalibrationRecord,
    CalibrationStageRecord,
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


CALIBRATED = datetime(2026, 4, 2, 6, 0, tzinfo=UTC)
"""When the simulated units' calibration was fitted, approved and applied."""


def sim_chain(device_id: str) -> Chain:
    """A simulated unit's calibration: channel gains and a speed factor, approved, under a
    verification certificate valid through 2026 (covering :data:`T0`'s days)."""
    runs = "2 reference trucks x 10 runs (simulated)"
    return Chain(
        device_id=device_id, version="2026-04", applied_by="sim", applied_at=CALIBRATED,
        certificate=Certificate(number="JJG907-2026-0001", valid_from=date(2026, 4, 3),
                                valid_to=date(2026, 12, 31), issuer="simulated"),
        stages=[ChannelGain(version="2026-04", fitted_from=runs, uncertainty_pct=0.5,
                            approved_by="sim", approved_at=CALIBRATED,
                            factors=[1.0, 1.01, 0.99, 1.0]),
                SpeedFactor(version="2026-04", fitted_from=runs, uncertainty_pct=0.7,
                            approved_by="sim", approved_at=CALIBRATED,
                            speeds_kmh=[40.0, 60.0, 80.0], factors=[1.01, 1.0, 0.99])])


@functools.cache
def sim_calibration(device_id: str) -> CalibrationRecord:
    """The packet's record of :func:`sim_chain` (the fields a unit writes; the simulator
    may not import the edge's own :func:`edge.packets.calibration_record`)."""
    chain = sim_chain(device_id)
    cert = chain.certificate
    assert cert is not None
    return CalibrationRecord(
        version=chain.version, certificate=cert.number, certificate_valid_from=cert.valid_from,
        certificate_valid_to=cert.valid_to, chain_digest=chain.digest(),
        applied_by=chain.applied_by, applied_at=chain.applied_at,
        stages=[CalibrationStageRecord(
            kind=s.kind, version=s.version, unit=s.unit, fitted_from=s.fitted_from,
            uncertainty_pct=s.uncertainty_pct, approved_by=s.approved_by,
            approved_at=s.approved_at, factors=list(s.factors),
            points=list(getattr(s, "speeds_kmh", []))) for s in chain.stages])


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
        calibration=sim_calibration(device_id),
        trail=ProcessingTrail(software_version="0.1.0", rules_digest="sha256:" + "a" * 16),
        images=[image_ref(ROLES[i % len(ROLES)], data) for i, data in enumerate(images)],
    )
