"""The roadside unit's evidence path: each screened vehicle drafted as a packet, committed
to the outbox, and sent to the center by the sender's own thread.

The weighing loop calls :meth:`EvidenceLink.put` and nothing else: a commit to the local
SQLite file, never a wait on the network. When the outbox cannot store (its disk is full,
even after removing acknowledged packets) a suspected overload is held in memory by the
outbox and the failure is counted and logged here, while a light record is dropped by the
outbox (counted and logged there, ``light_dropped``); either way weighing goes on.
"""

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from calibration.chain import Chain
from edge.outbox import OutboxError
from edge.packets import CapturedImage, calibration_record, draft_packet
from edge.sender import from_settings
from edge.settings import EdgeSettings
from evidence.packet import (
    CalibrationRecord,
    ClockStatus,
    MissingImage,
    PlateRecord,
    ProcessingTrail,
)
from overload import RuleBook
from zhichao import __version__
from zhichao.errors import ConfigError

log = logging.getLogger(__name__)


class EvidenceLink:
    """Outbox and sender of one unit, from its settings (paths relative to ``base_dir``).

    ``chain``: the calibration the unit weighs with; every packet then carries it (its
    stages, digest and certificate), which the center needs to take a capture as
    evidence. Without one the packets say only ``factor_set: "settings"`` and the
    settings' version and certificate number: the older form, which the center keeps as
    data but does not take as evidence."""

    def __init__(self, settings: EdgeSettings, base_dir: Path, rules: RuleBook,
                 chain: Chain | None = None):
        self.settings = settings
        self.evidence = settings.evidence.resolved(base_dir)
        self.calibration = self._calibration(chain)
        self.outbox, self.sender = from_settings(self.evidence)
        self.group_threshold_m = rules.group_threshold_m
        self.trail = ProcessingTrail(
            software_version=__version__, rules_digest=rules.digest,
            signal_parameters=settings.signal.model_dump(mode="json"))
        self.put_count = 0
        self.failed = 0

    def _calibration(self, chain: Chain | None) -> CalibrationRecord:
        """The record every packet carries; a chain of another unit is a ConfigError
        (its numbers were fitted on other strips)."""
        if chain is None:
            return CalibrationRecord(version=self.evidence.calibration_version,
                                     factor_set="settings",
                                     certificate=self.evidence.certificate)
        if chain.device_id != self.settings.device_id:
            raise ConfigError(f"calibration chain {chain.version} is of device "
                              f"{chain.device_id}, this unit is {self.settings.device_id}")
        return calibration_record(chain)

    def start(self) -> None:
        self.sender.start()

    def put(self, vehicle: dict, *, captured_at: datetime, clock_status: ClockStatus,
            suspected: bool, images: Sequence[CapturedImage] = (),
            plate: PlateRecord | None = None, clock_uncertainty_ms: float | None = None,
            missing_images: Sequence[MissingImage] = ()) -> int | None:
        """Commit one screened vehicle (a dict of ``zhichao edge run``: lane 1-based,
        speed_mps, axle_loads_kg, spacings_m, tyres, axle_code, flags) as a packet; its
        sequence, or None if the outbox could not store it now (evidence: held and counted
        here; a light record on a full disk: dropped and counted by the outbox)."""
        packet, data = draft_packet(
            self.settings.device_id, site=self.evidence.site,
            direction=self.evidence.direction, lane=int(vehicle["lane"]),
            captured_at=captured_at, clock_status=clock_status,
            speed_mps=float(vehicle.get("speed_mps") or 0.0),
            axle_loads_kg=vehicle["axle_loads_kg"], spacings_m=vehicle.get("spacings_m", []),
            tyres=vehicle.get("tyres") or [],
            axle_code=None if vehicle.get("axle_code") in (None, "?") else vehicle["axle_code"],
            flags=vehicle.get("flags") or [], group_threshold_m=self.group_threshold_m,
            suspected=suspected, plate=plate, images=images, calibration=self.calibration,
            trail=self.trail, clock_uncertainty_ms=clock_uncertainty_ms,
            missing_images=missing_images)
        try:
            sequence = self.outbox.put(packet, data)
        except OutboxError as exc:
            self.failed += 1
            log.error("evidence not stored (held in memory, %d so far): %s", self.failed, exc)
            return None
        if sequence is not None:  # None: a light record dropped by the disk policy
            self.put_count += 1
        return sequence

    def stop(self, wait_s: float = 5.0) -> dict[str, int]:
        """Give the sender up to ``wait_s`` to deliver what is pending, stop it and close
        the outbox; the outbox's counts (what is still pending stays for the next run)."""
        deadline = time.monotonic() + wait_s
        while self.outbox.counts()["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
        self.sender.stop()
        counts = {**self.outbox.counts(), "failed": self.failed}
        self.outbox.close()
        return counts
