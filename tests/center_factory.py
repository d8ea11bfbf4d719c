"""Packets, registry rows and databases for the center's tests: real objects, no mocks."""

import functools
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, insert

from calibration.chain import Certificate, Chain, ChannelGain, SpeedFactor, TemperatureCurve
from center.db import make_engine, upgrade
from center.ingest_models import Device, StoredPacket
from center.registry import DeviceRow
from edge.packets import calibration_record
from evidence.packet import (
    GENESIS_HASH,
    CalibrationRecord,
    ImageRef,
    Packet,
    PlateRecord,
    ProcessingTrail,
    VehicleRecord,
    canonical_bytes,
    packet_hash,
)

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
"""A capture time: 2026-06-01 10:00 in China."""

REGISTRY_CSV = """\
device_id,road,stake,direction,latitude,longitude,review_date,certificate_number,\
accuracy_class,certificate_valid_from,certificate_valid_to,signs_installed,notice_date,\
notice_document,notice_url,enforcement_start,active,suspensions
D1,G60,K123+450,east,30.25,120.16,2026-01-10,JD-2026-001,5,2026-01-15,2027-01-14,\
2026-01-20,2026-02-01,浙交〔2026〕1号,https://example.gov.cn/n/1,2026-03-01,true,
D2,G92,K12+000,west,30.10,121.00,2026-01-10,JD-2026-002,10,2026-01-15,2027-01-14,\
2026-01-20,2026-02-01,浙交〔2026〕2号,,2026-03-01,true,2026-05-30..2026-06-02 repair
"""

STAFF_CSV = """\
officer_id,name,credential_number,roles,active,valid_from,valid_to
ZF001,张三,浙33010012345,reviewer,true,2026-01-01,2028-12-31
ZF002,李四,浙33010012346,reviewer,true,2026-01-01,2028-12-31
FS001,赵六,浙33010012347,legal_reviewer,true,2026-01-01,2028-12-31
ADM01,王芳,,administrator,true,2026-01-01,
"""
"""Two enforcement officers, a legal reviewer and an administrator without a credential."""


def make_chain(*, device_id: str = "D1", number: str = "JD-2026-001",
               valid_from: date = date(2026, 1, 15), valid_to: date = date(2027, 1, 14),
               certificate: bool = True) -> Chain:
    """D1's calibration: channel gains, a speed factor and a temperature curve, approved,
    under the registry's certificate (valid over T0's day unless told otherwise)."""
    approved = datetime.combine(valid_from - timedelta(days=3), time(3, 0), UTC)
    stages = [
        ChannelGain(version="g-2026-01", fitted_from="2 reference trucks x 10 runs",
                    uncertainty_pct=0.4, approved_by="王工", approved_at=approved,
                    factors=[0.98, 1.01, 1.0, 1.02, 0.99, 1.0, 1.03, 0.97]),
        SpeedFactor(version="v-2026-01", fitted_from="2 reference trucks x 10 runs",
                    uncertainty_pct=0.6, approved_by="王工", approved_at=approved,
                    speeds_kmh=[40, 60, 80], factors=[1.01, 1.0, 0.985]),
        TemperatureCurve(version="t-2026-01", fitted_from="sensor datasheet",
                         uncertainty_pct=0.8, approved_by="王工", approved_at=approved,
                         temperatures_c=[0, 20, 40], factors=[0.99, 1.0, 1.015]),
    ]
    cert = Certificate(number=number, valid_from=valid_from, valid_to=valid_to,
                       issuer="浙江省计量科学研究院") if certificate else None
    return Chain(device_id=device_id, version="2026-01", stages=stages, certificate=cert,
                 applied_by="王工", applied_at=approved)


def chain_record(chain: Chain | None = None) -> CalibrationRecord:
    """The packet's record of ``chain`` (default :func:`make_chain`), as a unit writes it."""
    return calibration_record(chain or make_chain())


@functools.cache
def _covering(device_id: str) -> CalibrationRecord:
    """The default packet's calibration: the device's chain under its registry certificate's
    number, valid over every capture day the tests use (2024 to 2027: some look back over
    a year)."""
    number = {"D0": "JD-0", "D1": "JD-2026-001", "D2": "JD-2026-002"}.get(device_id,
                                                                         f"JD-{device_id}")
    return chain_record(make_chain(device_id=device_id, number=number,
                                   valid_from=date(2024, 1, 1), valid_to=date(2027, 12, 31)))


LEGACY_CALIBRATION = CalibrationRecord(version="1", factor_set="settings",
                                       certificate="JD-2026-001")
"""The record of a unit with no chain (factors from its settings; schema 1.1's form)."""


def make_packet(*, device_id: str = "D1", sequence: int = 1, captured_at: datetime = T0,
                plate: str | None = "浙A12345", confidence: float = 0.95,
                code: str | None = "157", gross_kg: float = 55400.0,
                flags: tuple[str, ...] = (), images: int = 1,
                clock: str = "synced",
                calibration: CalibrationRecord | None = None) -> Packet:
    """A packet of one pass with the given facts; loads split evenly over 6 axles;
    weighed with the device's chain (:func:`make_chain`, certified 2024 to 2027) unless
    ``calibration`` is given."""
    plate_record = None if plate is None else PlateRecord(
        text=plate, colour="yellow", confidence=confidence, box=[10, 10, 100, 30, 0])
    return Packet(
        device_id=device_id, site="site-1", lane=1, direction="east",
        captured_at=captured_at, clock_status=clock, sequence=sequence,
        previous_hash=GENESIS_HASH, suspected_overload=True,
        vehicle=VehicleRecord(axle_loads_kg=[gross_kg / 6] * 6, axle_groups=[1, 2, 3],
                              spacings_m=[3.4, 1.35, 7.0, 1.31, 1.31], speed_kmh=60.0,
                              gross_kg=gross_kg, axle_code=code, flags=list(flags)),
        plate=plate_record,
        calibration=calibration or _covering(device_id),
        trail=ProcessingTrail(software_version="0.1.0", rules_digest="0" * 64),
        images=[ImageRef(role="front", sha256=f"{i:064x}", size=100) for i in range(images)],
    )


def registry_row(**changes):
    """A device row that passes every check for T0, with ``changes``."""
    values = dict(device_id="D1", road="G60", stake="K123+450", direction="east",
                  latitude=30.25, longitude=120.16, review_date=date(2026, 1, 10),
                  certificate_number="JD-2026-001", accuracy_class="5",
                  certificate_valid_from=date(2026, 1, 15),
                  certificate_valid_to=date(2027, 1, 14), signs_installed=date(2026, 1, 20),
                  notice_date=date(2026, 2, 1), notice_document="浙交〔2026〕1号",
                  enforcement_start=date(2026, 3, 1), active=True)
    values.update(changes)
    return DeviceRow(**values)


def center_engine(url: str) -> Engine:
    """An engine on ``url`` with every migration applied."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def store_packets(engine: Engine, packets) -> None:
    """Put packets of device D1 into the ingestion's table, as the receiver would (the
    signature is not checked past the receiver, so a placeholder stands for it)."""
    with engine.begin() as conn:
        conn.execute(insert(Device).values(device_id="D1", sign_public_key="pem",
                                           curve_public_key="k" * 40, enrolled_at=T0))
        for p in packets:
            meta = canonical_bytes(p)
            conn.execute(insert(StoredPacket).values(
                device_id=p.device_id, sequence=p.sequence, hash=packet_hash(meta),
                previous_hash=p.previous_hash, captured_at=p.captured_at, lane=1,
                suspected_overload=True, meta=meta, signature=b"s", received_at=T0))
