"""Settings of a roadside unit: one YAML file, validated before anything starts.

Errors name the file, the option and the value, and unknown options are errors, so a
typo stops start-up instead of being ignored (Klipper's ``check_unused``).
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.registry import open_device
from drivers.strips import StripArray
from edge.plate_workers import PlateSettings
from edge.signal.settings import SignalSettings
from edge.timebase.settings import TimeSettings
from zhichao.metrics import MetricsAddress
from zhichao.settings import ConnectEndpoint, count, load_model, number

KEEPALIVE_IDLE_MAX_S = 32767
"""The longest TCP keepalive idle time Linux takes (``MAX_TCP_KEEPIDLE``): a longer
heartbeat cannot be set on the socket."""


class RulesSettings(BaseModel):
    """Which rule tables the edge screens with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: Path | None = Field(None, description="a site's own rule tables; default: "
                                "the tables shipped with zhichao")
    vendor: str = Field("generic", description="vendor table for axle digits 8 and 9")


class EvidenceSettings(BaseModel):
    """Where packets wait (the outbox), which keys sign and encrypt them, and where and
    how they go (the sender). Key files are made by ``zhichao keys new``; relative paths
    are relative to the settings file (:meth:`resolved`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    site: str = Field("", description="road and stake of the site, as the center's "
                      "registry names it")
    direction: str = Field("", description="direction of travel this unit watches")
    certificate: str = Field("", description="number of the device's verification "
                             "certificate, carried in every packet")
    calibration_version: str = Field("factory", description="which calibration weighs")
    outbox: Path = Field(Path("outbox.db"), description="SQLite outbox file")
    keep_days: number(3660, "ten years; the outbox file keeps every packet of the time",
                      unit=" days", above=None, at_least=0) = Field(
        7.0, description="acknowledged evidence (suspected overloads) is kept this long, "
        "then pruned")
    keep_light_days: number(3660, "ten years; the outbox file keeps every packet of the "
                            "time", unit=" days", above=None, at_least=0) = Field(
        7.0, description="acknowledged light records are kept this long (at most "
        "keep_days), then pruned; on a full disk they go first")
    hold_max: count(100_000, "each packet held carries its images, in memory", at_least=0
                    ) = Field(1000, description="packets held in memory while the outbox's "
                              "disk is full; beyond, the oldest are dropped and counted")
    signing_key: Path = Field(Path("keys/edge.sign"), description="Ed25519 private key "
                              "(PEM) that signs every packet")
    curve_secret_key: Path = Field(Path("keys/edge.key_secret"),
                                   description="this unit's CURVE key pair")
    center_public_key: Path = Field(Path("keys/center.key"),
                                    description="the center's CURVE public key")
    endpoints: list[ConnectEndpoint] = Field(
        default_factory=lambda: ["tcp://127.0.0.1:5760"], min_length=1,
        description="centers, tried in this order (tcp://HOST:PORT, ipc://PATH)")
    center_public_keys: dict[ConnectEndpoint, Path] = Field(
        default_factory=dict, description="the center's public key file for an endpoint "
        "served with another key than center_public_key (a rotation of the center's key: "
        "its new key's endpoint)")
    zap_domain: str = Field("zhichao", min_length=1, description="the center's ZAP domain")
    window: count(100_000, "every packet of the window is kept to be sent again") = Field(
        1000, description="packets sent and not yet acknowledged")
    window_mb: number(4096, "the window's packets are read into memory", unit=" MB") = Field(
        64.0, description="... and their megabytes")
    ack_timeout_s: number(3600, "an hour; a lost packet waits this long to be sent again",
                          unit=" s") = Field(
        2.0, description="shortest wait for an ack before a resend; the wait is learnt "
        "from the acks above it")
    resend_max_s: number(3600, "an hour; a lost packet waits this long to be sent again",
                         unit=" s") = Field(30.0, description="longest wait before a resend")
    heartbeat_s: number(KEEPALIVE_IDLE_MAX_S, "the longest TCP keepalive idle time the "
                        "kernel takes", unit=" s") = Field(
        5.0, description="a ping when idle this long; TCP keepalive probes likewise")
    failover_s: number(3600, "an hour; a unit whose center is silent this long tries the "
                       "next", unit=" s") = Field(
        10.0, description="silence before the next endpoint")

    @model_validator(mode="after")
    def _keys_of_listed_endpoints(self) -> "EvidenceSettings":
        """A key for an endpoint not listed would never be used: a typo."""
        unknown = [e for e in self.center_public_keys if e not in self.endpoints]
        if unknown:
            raise ValueError(f"center_public_keys names {', '.join(unknown)}, not among "
                             f"endpoints ({', '.join(self.endpoints)})")
        return self

    def center_key_of(self, endpoint: str) -> Path:
        """The center's public key file to connect to ``endpoint`` with."""
        return self.center_public_keys.get(endpoint, self.center_public_key)

    def resolved(self, base_dir: Path) -> "EvidenceSettings":
        """The same settings with relative paths made relative to ``base_dir``."""
        base = Path(base_dir)

        def here(p: Path) -> Path:
            return p if p.is_absolute() else base / p

        update: dict[str, Any] = {
            name: here(getattr(self, name))
            for name in ("outbox", "signing_key", "curve_secret_key", "center_public_key")}
        update["center_public_keys"] = {e: here(p) for e, p in self.center_public_keys.items()}
        return self.model_copy(update=update)


class UnitSettings(BaseModel):
    """How the roadside unit waits for what a pass needs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    frame_wait_s: float = Field(2.0, gt=0, le=30, description="longest wait for a camera's "
                                "frame of the wanted moment; then the camera is recorded as "
                                "missing for that pass. A live camera's frame arrives within "
                                "a few tenths of a second; two seconds covers a reconnect")
    record_delay_s: float = Field(2.0, ge=0, le=60, description="how long after a vehicle "
                                  "has left a WIM controller sends its record: its arrival "
                                  "less this is the capture time, and this its uncertainty")
    unfitted_uncertainty_s: float = Field(1.0, gt=0, le=60, description="uncertainty of a "
                                          "vehicle's time before the digitiser's clock is "
                                          "fitted (its first frames): the frame's arrival, "
                                          "one batch of the signal loop late at most")
    metrics_address: MetricsAddress | None = Field(
        None, description="HOST:PORT to serve Prometheus metrics on (/metrics; "
        "docs/metrics.md), e.g. 127.0.0.1:9464; None: no metrics page")


class EdgeSettings(BaseModel):
    """Everything a roadside unit needs to know about itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: str = Field("demo-site-01", min_length=1)
    site: StripArray = Field(default_factory=StripArray)
    signal: SignalSettings = Field(default_factory=SignalSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    time: TimeSettings = Field(default_factory=TimeSettings)
    plates: PlateSettings = Field(default_factory=PlateSettings)
    unit: UnitSettings = Field(default_factory=UnitSettings)
    calibration: list[float] | None = Field(
        None, description="factor per digitiser channel on the newtons per count (the "
        "older form; a calibration_file takes its place)")
    calibration_file: Path | None = Field(
        None, description="the unit's calibration chain (JSON written by `zhichao "
        "calibrate apply`), relative to this file; it goes into every packet")
    pavement_temperature_c: float | None = Field(
        None, ge=-60, le=100, description="pavement temperature to weigh at while no "
        "temperature probe (a device of kind 'temperature') gives a fresh reading; None: "
        "the strips' reference temperature")
    devices: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="the site's devices by name, each with a 'kind' "
        "(serial, modbus, camera, temperature) and that driver's options; a 'temperature' "
        "probe gives the pavement temperature each block is weighed at")

    @model_validator(mode="after")
    def _rows_before_axles(self) -> "EdgeSettings":
        if self.site.row_spacing_m >= self.signal.min_axle_spacing_m:
            raise ValueError(
                f"site.row_spacing_m ({self.site.row_spacing_m}) must be below "
                f"signal.min_axle_spacing_m ({self.signal.min_axle_spacing_m}): every axle "
                f"must cross the last row before the next axle reaches the first")
        if self.calibration is not None and self.calibration_file is not None:
            raise ValueError("give either calibration (factors) or calibration_file "
                             "(a chain), not both")
        if self.calibration is not None and len(self.calibration) != self.site.n_channels:
            raise ValueError(f"calibration has {len(self.calibration)} factors, expected one "
                             f"per channel ({self.site.n_channels})")
        return self


def load_edge_settings(path: Path) -> EdgeSettings:
    """Read and validate an edge settings file, its device sections included.

    Each device section is checked by its own driver now (nothing is opened), so a typo
    in any of them stops start-up with the device, the option and the value named.
    """
    path = Path(path)
    settings = load_model(path, EdgeSettings)
    for name, section in settings.devices.items():
        open_device(name, section, source=str(path), base_dir=path.parent)
    return settings
