"""A weighed vehicle as an evidence draft: what the roadside unit puts in its outbox.

The outbox (:mod:`edge.outbox`) gives the draft its sequence number and chain hash and
signs it; here only the vehicle's measurement, plate, images and provenance are laid out
in the packet's fields. A vehicle the screen found over its limit is a suspected overload
and carries its images; any other is a light traffic record without images.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from calibration.chain import Chain, SpeedFactor, TemperatureCurve
from evidence.packet import (
    GENESIS_HASH,
    CalibrationRecord,
    CalibrationStageRecord,
    ClockStatus,
    ImageRole,
    MissingImage,
    Packet,
    PlateRecord,
    ProcessingTrail,
    VehicleRecord,
    image_ref,
)


@dataclass(frozen=True)
class CapturedImage:
    """One picture of a pass: its role, JPEG bytes, the camera that took it and when."""

    role: ImageRole
    data: bytes
    camera: str | None = None
    captured_at: datetime | None = None


def _captured(image: "CapturedImage | tuple[ImageRole, bytes]") -> CapturedImage:
    return image if isinstance(image, CapturedImage) else CapturedImage(*image)


def _utc(t: datetime | None) -> datetime | None:
    """A chain file's time as UTC: one written without a zone is taken as UTC (the
    calibration tools write UTC), since a packet never carries a naive time."""
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def calibration_record(chain: Chain) -> CalibrationRecord:
    """What a packet says of the chain the unit weighs with: its version and digest,
    every stage with its factors (and the speeds or temperatures of a curve), fit,
    uncertainty and approval, who applied it, and its verification certificate's number
    and dates ("" and no dates when the chain has none: the center then refuses it)."""
    stages = []
    for s in chain.stages:
        points = (s.speeds_kmh if isinstance(s, SpeedFactor)
                  else s.temperatures_c if isinstance(s, TemperatureCurve) else [])
        stages.append(CalibrationStageRecord(
            kind=s.kind, version=s.version, unit=s.unit, fitted_from=s.fitted_from,
            uncertainty_pct=s.uncertainty_pct, approved_by=s.approved_by,
            approved_at=_utc(s.approved_at), factors=list(s.factors), points=list(points)))
    cert = chain.certificate
    return CalibrationRecord(
        version=chain.version, certificate=cert.number if cert else "",
        certificate_valid_from=cert.valid_from if cert else None,
        certificate_valid_to=cert.valid_to if cert else None,
        chain_digest=chain.digest(), stages=stages, applied_by=chain.applied_by,
        applied_at=_utc(chain.applied_at))


def axle_groups(spacings_m: Sequence[float], group_threshold_m: float) -> list[int]:
    """Axles per group, front to back: axles closer than the rule tables' grouping
    threshold form one group.

    >>> axle_groups([3.2, 1.35, 7.0, 1.31, 1.31], 1.9)
    [1, 2, 3]
    """
    groups, run = [], 1
    for spacing in spacings_m:
        if spacing < group_threshold_m:
            run += 1
        else:
            groups.append(run)
            run = 1
    groups.append(run)
    return groups


def draft_packet(device_id: str, *, site: str, direction: str, lane: int,
                 captured_at: datetime, clock_status: ClockStatus, speed_mps: float,
                 axle_loads_kg: Sequence[float], spacings_m: Sequence[float],
                 tyres: Sequence[str], axle_code: str | None, flags: Sequence[str],
                 group_threshold_m: float, suspected: bool, plate: PlateRecord | None,
                 images: Sequence[CapturedImage | tuple[ImageRole, bytes]],
                 calibration: CalibrationRecord, trail: ProcessingTrail,
                 raw_record: bytes = b"", clock_uncertainty_ms: float | None = None,
                 missing_images: Sequence[MissingImage] = ()) -> tuple[Packet, list[bytes]]:
    """The draft packet of one vehicle pass and the image bytes it references, in order.

    ``lane`` is 1-based. Images are dropped from a light record (not ``suspected``): the
    outbox refuses images there, and traffic statistics need none.
    """
    kept = [_captured(i) for i in images] if suspected else []
    loads = np.asarray(axle_loads_kg, dtype=float)
    packet = Packet(
        device_id=device_id, site=site, lane=lane, direction=direction,
        captured_at=captured_at, clock_status=clock_status,
        clock_uncertainty_ms=clock_uncertainty_ms, sequence=1,
        previous_hash=GENESIS_HASH, suspected_overload=suspected,
        vehicle=VehicleRecord(
            axle_loads_kg=[round(float(x), 1) for x in loads],
            axle_groups=axle_groups(spacings_m, group_threshold_m),
            spacings_m=[round(float(x), 3) for x in spacings_m],
            speed_kmh=round(float(speed_mps) * 3.6, 2), gross_kg=round(float(loads.sum()), 1),
            axle_code=axle_code, tyres=list(tyres), flags=sorted(flags),
            raw_record=raw_record),
        plate=plate, calibration=calibration, trail=trail,
        images=[image_ref(i.role, i.data, camera=i.camera, captured_at=i.captured_at)
                for i in kept],
        missing_images=list(missing_images) if suspected else [])
    return packet, [i.data for i in kept]
